import Dispatch
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A process that is one member of a cluster and runs one job on the shared heap: the hidden
/// `gallocy internal` checks that the multi-process tests start (`torn-page`, `lease-expiry`).
/// The job reports what happened as JSON lines on stdout (`emit`), written unbuffered so that a
/// test that stops or kills the process right after still reads them. Exit 0 only if the job
/// returns true.
package enum MemberJobProcess {
    /// Runs `job` on a member started with `configuration`; stays up `linger` after it, so that
    /// the others can finish (a cluster needs a majority to the end).
    package static func run(
        _ configuration: NodeConfiguration, name: String, linger: Duration = .seconds(2),
        job: @escaping @Sendable (Member, Logger) async throws -> Bool
    ) -> Int32 {
        let logger = Logger.memberProcess(label: "gallocy.\(name)", level: configuration.logLevel, member: configuration.id)
        let log = logger
        let status = StatusCell()
        let done = DispatchSemaphore(value: 0)
        Task {
            defer { done.signal() }
            let member: Member
            do throws(MemberError) {
                member = try await Member.start(configuration: configuration, logger: log)
            } catch {
                emit(["event": .string("error"), "error": .string(error.code.rawValue), "message": .string(error.message)])
                return
            }
            do {
                let ok = try await job(member, log)
                status.set(ok ? 0 : 1)
            } catch let error as MemberError {
                emit(["event": .string("error"), "error": .string(error.code.rawValue), "message": .string(error.message)])
            } catch {
                emit(["event": .string("error"), "error": .string("other"), "message": .string("\(error)")])
            }
            try? await Task.sleep(for: linger)
            await member.stop()
        }
        done.wait()
        return status.get()
    }

    /// Writes one JSON object and a newline to stdout at once, unbuffered.
    package static func emit(_ fields: [String: JSONValue]) {
        let bytes = JSONValue.object(fields).serialized() + [UInt8(ascii: "\n")]
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }

    /// Milliseconds on the monotonic clock, for durations in the JSON lines.
    package static func millis(since start: ContinuousClock.Instant) -> Double {
        let elapsed = start.duration(to: .now)
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    /// The first `pageSize`-aligned address at or after `block`.
    package static func pageAligned(_ block: UnsafeMutableRawPointer, pageSize: Int) -> UnsafeMutableRawPointer {
        let address = UInt(bitPattern: block)
        let aligned = (address + UInt(pageSize) - 1) / UInt(pageSize) * UInt(pageSize)
        return UnsafeMutableRawPointer(bitPattern: aligned)!
    }
}

private final class StatusCell: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int32 = 1
    func set(_ status: Int32) { lock.withLock { value = status } }
    func get() -> Int32 { lock.withLock { value } }
}
