import Dispatch
import Foundation
import Logging

/// What an example reports at the end: whether the result it verified is correct, and the
/// figures it wants to show. Printed as one JSON line (CONTRACT.md 1.4).
package struct ExampleOutcome: Sendable {
    package var ok: Bool
    package var fields: [String: JSONValue]

    package init(ok: Bool, fields: [String: JSONValue] = [:]) {
        self.ok = ok
        self.fields = fields
    }
}

/// `gallocy example <name>` as a process: an in-process member started with the flags of
/// `gallocy node`, the example's job on the shared heap, one JSON line on stdout, exit 0 only if
/// the verified result is correct. SIGTERM and SIGINT stop it (exit 1: the job did not finish).
package enum ExampleProcess {
    /// How long a member that finished stays up, so that the others can finish (a cluster needs
    /// a majority to the end).
    package static let linger: Duration = .seconds(3)

    package static func run(
        _ configuration: NodeConfiguration, example name: String,
        job: @escaping @Sendable (Member, Logger) async throws -> ExampleOutcome
    ) -> Int32 {
        let logger = Logger.memberProcess(label: "gallocy.example", level: configuration.logLevel, member: configuration.id)
        let status = StatusBox()
        let done = DispatchSemaphore(value: 0)
        let log = logger
        Task {
            defer { done.signal() }
            let member: Member
            do throws(MemberError) {
                member = try await Member.start(configuration: configuration, logger: log)
            } catch {
                status.fail(name, "the member did not start: \(error.message)")
                return
            }
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    status.fail(name, "interrupted by signal \(sig)")
                    done.signal()
                }
                source.resume()
                status.keep(source)
            }
            do {
                let outcome = try await job(member, log)
                status.finish(name, outcome)
            } catch {
                status.fail(name, "\(error)")
            }
            try? await Task.sleep(for: linger)
            await member.stop()
        }
        done.wait()
        return status.print()
    }
}

/// The outcome, set once from the job or a signal. `@unchecked Sendable`: guarded by its lock.
private final class StatusBox: @unchecked Sendable {
    private let lock = NSLock()
    private var line: [String: JSONValue]?
    private var ok = false
    private var sources: [any DispatchSourceSignal] = []

    func finish(_ name: String, _ outcome: ExampleOutcome) {
        lock.withLock {
            guard line == nil else { return }
            var fields = outcome.fields
            fields["example"] = .string(name)
            fields["ok"] = .bool(outcome.ok)
            line = fields
            ok = outcome.ok
        }
    }

    func fail(_ name: String, _ message: String) {
        lock.withLock {
            guard line == nil else { return }
            line = ["example": .string(name), "ok": .bool(false), "error": .string(message)]
            ok = false
            FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        }
    }

    func keep(_ source: any DispatchSourceSignal) { lock.withLock { sources.append(source) } }

    /// Prints the JSON line and returns the exit status.
    func print() -> Int32 {
        lock.withLock {
            let object = JSONValue.object(line ?? ["ok": .bool(false), "error": .string("no outcome")])
            FileHandle.standardOutput.write(Data(object.serialized() + [UInt8(ascii: "\n")]))
            return ok ? 0 : 1
        }
    }
}
