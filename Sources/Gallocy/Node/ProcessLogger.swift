import Logging

extension Logger {
    /// The logger of a member process (`gallocy node`, an example, a test child): to stderr at
    /// `level`, with the member's id in every line's metadata.
    package static func memberProcess(label: String, level: Logger.Level, member: UInt64) -> Logger {
        var logger = Logger(label: label) { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        logger.logLevel = level
        logger[metadataKey: "member"] = "\(member)"
        return logger
    }
}
