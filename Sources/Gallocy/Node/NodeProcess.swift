import Dispatch
import Foundation
import Logging

/// `gallocy node` as a process: logging to stderr, the member, SIGTERM/SIGINT, the exit status.
package enum NodeProcess {
    /// The log level names `--log-level` accepts.
    package static let logLevels = Logger.Level.allCases.map(\.rawValue)

    /// Runs a member until SIGTERM/SIGINT (returns 0 after a graceful shutdown) or a fatal
    /// error (prints it as the first stderr line, returns 1).
    package static func run(_ configuration: NodeConfiguration) -> Int32 {
        let logger = Logger.memberProcess(label: "gallocy.node", level: configuration.logLevel, member: configuration.id)
        let outcome = ExitBox()
        let done = DispatchSemaphore(value: 0)
        let log = logger
        Task {
            defer { done.signal() }
            let node: Node
            do {
                node = try await Node.start(configuration, logger: log)
            } catch let error as NodeError {
                outcome.set(error)
                return
            } catch {
                outcome.set(NodeError(.badConfiguration, "\(error)"))
                return
            }
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    log.info("signal received: shutting down", metadata: ["signal": "\(sig)"])
                    node.requestStop(nil)
                }
                source.resume()
                outcome.keep(source)
            }
            let reason = await node.waitUntilStopRequested()
            await node.shutdown()
            if let reason { outcome.set(reason) }
        }
        done.wait()
        if let error = outcome.error {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            return 1
        }
        return 0
    }
}

/// The outcome of the run, set from the task, read after it finished.
/// `@unchecked Sendable`: guarded by its lock.
private final class ExitBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _error: NodeError?
    private var sources: [any DispatchSourceSignal] = []

    func set(_ error: NodeError) { lock.withLock { if _error == nil { _error = error } } }
    func keep(_ source: any DispatchSourceSignal) { lock.withLock { sources.append(source) } }
    var error: NodeError? { lock.withLock { _error } }
}
