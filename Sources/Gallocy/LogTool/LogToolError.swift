import GallocyCodec
import GallocyStateMachine
import GallocyStorage

/// Why `gallocy log` could not do what it was asked. Each code has its own exit status, so a
/// script can tell "not a data directory" from "damaged" without reading the message; the message
/// names the directory, the index or the record, and what to do.
package struct LogToolError: Error, Sendable, Hashable, CustomStringConvertible {
    package enum Code: String, Sendable, Hashable {
        /// The path does not exist, or is not a Gallocy data directory.
        case notADataDirectory
        /// The directory (or a record in it) has a format version this build does not read.
        case unsupportedVersion
        /// A stored record is damaged: the message names the index or record.
        case corrupted
        /// The index asked for is no longer in the log (compacted into a snapshot) or not there yet.
        case outOfRange
        /// A flag's value makes no sense (a reversed range, bad SQL, a file that cannot be written).
        case badArgument
        /// The replay machinery failed (SQLite, mapping the heap).
        case replayFailed
        /// Two directories differ (`gallocy log diff`).
        case differ
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }

    /// The process exit status for this error: 0 is success, 1 "they differ / damaged", the rest
    /// tell the kinds of failure apart.
    package var exitStatus: Int32 {
        switch code {
        case .differ: 1
        case .corrupted: 1
        case .notADataDirectory: 2
        case .unsupportedVersion: 3
        case .outOfRange: 4
        case .badArgument: 5
        case .replayFailed: 6
        }
    }

    /// Maps a storage failure onto the tool's codes, keeping storage's message (which already
    /// names the record and what to do).
    package init(_ error: StorageError) {
        switch error.code {
        case .notFound: self.init(.notADataDirectory, error.message)
        case .unsupportedVersion: self.init(.unsupportedVersion, error.message)
        case .corrupted: self.init(.corrupted, error.message)
        case .compacted, .unavailable: self.init(.outOfRange, error.message)
        default: self.init(.corrupted, error.message)
        }
    }

    /// Maps a state machine failure during replay.
    package init(_ error: StateMachineError, while context: String) {
        switch error.code {
        case .badSnapshot, .corruptTable: self.init(.corrupted, "\(context): \(error.message)")
        case .badQuery, .notReadOnly: self.init(.badArgument, "\(context): \(error.message)")
        default: self.init(.replayFailed, "\(context): \(error)")
        }
    }
}
