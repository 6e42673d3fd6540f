import Foundation
import GallocyCodec
import GallocyRuntime

/// `gallocy internal lease-expiry`: a release rejected because its lock's lease expired publishes
/// nothing and is undone locally (Member.unlock, RuntimeHeap rule 3).
///
/// Three roles, one process each, sharing a block of three pages (root `check.lease.block`; two
/// words used: `word0` in its first page, `word1` in its second):
///
/// - **holder** (A): takes the lock with a short lease, stores `holderValue` into both words,
///   prints `{"event":"holding",...}`, then waits until `--go-file` exists. The test stops it
///   (SIGSTOP) meanwhile, lets the taker through, creates the file and continues it (SIGCONT).
///   Then it releases: the release must fail with `leaseExpired`, and its local view must show
///   the taker's `word0` and a zero `word1` right after (`{"event":"unlock",...}`).
/// - **taker** (B): waits until `--go-file` exists, takes the lock (granted once the leader
///   expired A's lease), prints what it saw, stores `takerValue` into `word0` only, releases.
/// - **observer**: a third member, so that two of three are up while A is stopped.
///
/// Then all three meet at a barrier and print `{"event":"final","word0":...,"word1":...}`, read
/// under the lock: everyone must see the taker's `word0` and a zero `word1`.
package enum LeaseExpiryCheck {
    package enum Role: String, Sendable, CaseIterable {
        case holder, taker, observer
    }

    package struct Options: Sendable {
        package var role: Role
        package var leaseMillis = 1500
        package var goFile: String?
        package var participants = 3
        package init(role: Role) { self.role = role }
    }

    package static let blockRoot = "check.lease.block"
    package static let lockName = "check.lease.lock"
    package static let holderValue: UInt64 = 0xAAAA_AAAA_0000_0001
    package static let takerValue: UInt64 = 0xBBBB_BBBB_0000_0002

    package static func run(member: Member, options: Options) async throws -> Bool {
        let pageSize = Int(member.settings.pageSize)
        let block = try await member.root(named: blockRoot, orCreate: 3 * pageSize)
        let start = MemberJobProcess.pageAligned(block, pageSize: pageSize)
        let word0 = start.bindMemory(to: UInt64.self, capacity: 1)
        let word1 = (start + pageSize + 8).bindMemory(to: UInt64.self, capacity: 1)
        let role = options.role.rawValue
        MemberJobProcess.emit(["event": .string("ready"), "role": .string(role), "member": .uint(member.id)])
        try await member.barrier("check.lease.start", participants: options.participants)
        var ok = true
        switch options.role {
        case .holder:
            let lock = try await member.lock(lockName, lease: .milliseconds(options.leaseMillis))
            let held = ContinuousClock.now
            word0.pointee = holderValue
            word1.pointee = holderValue
            MemberJobProcess.emit([
                "event": .string("holding"), "epoch": .uint(lock.epoch), "lease_ms": .int(Int64(options.leaseMillis)),
                "word0": .uint(word0.pointee), "word1": .uint(word1.pointee),
            ])
            await waitForFile(options.goFile)
            let heldMillis = MemberJobProcess.millis(since: held)
            var fields: [String: JSONValue] = [
                "event": .string("unlock"), "epoch": .uint(lock.epoch), "held_ms": .double(heldMillis.rounded()),
            ]
            do throws(MemberError) {
                try await member.unlock(lock)
                fields["released"] = .bool(true)
                ok = false
            } catch {
                fields["released"] = .bool(false)
                fields["error"] = .string(error.code.rawValue)
                fields["message"] = .string(error.message)
                ok = error.code == .leaseExpired
            }
            // The local view right after: the rejected release is undone here.
            fields["value_after"] = .uint(word0.pointee)
            fields["word1_after"] = .uint(word1.pointee)
            fields["undone"] = .int(Int64(member.runtimeCounters.undone))
            MemberJobProcess.emit(fields)
        case .taker:
            await waitForFile(options.goFile)
            let asked = ContinuousClock.now
            let lock = try await member.lock(lockName, lease: .seconds(10), wait: .seconds(60))
            let waited = MemberJobProcess.millis(since: asked)
            let before = (word0.pointee, word1.pointee)
            word0.pointee = takerValue
            try await member.unlock(lock)
            MemberJobProcess.emit([
                "event": .string("released"), "epoch": .uint(lock.epoch), "waited_ms": .double(waited.rounded()),
                "word0_before": .uint(before.0), "word1_before": .uint(before.1), "word0": .uint(takerValue),
            ])
        case .observer:
            break
        }
        try await member.barrier("check.lease.done", participants: options.participants)
        let lock = try await member.lock(lockName, lease: .seconds(10))
        let final = (word0.pointee, word1.pointee)
        try await member.unlock(lock)
        ok = ok && final.0 == takerValue && final.1 == 0
        MemberJobProcess.emit([
            "event": .string("final"), "role": .string(role), "word0": .uint(final.0), "word1": .uint(final.1),
            "undone": .int(Int64(member.runtimeCounters.undone)), "ok": .bool(ok),
        ])
        try await member.barrier("check.lease.exit", participants: options.participants)
        return ok
    }

    /// Returns once `path` exists (at once without a path).
    private static func waitForFile(_ path: String?) async {
        guard let path else { return }
        while !FileManager.default.fileExists(atPath: path) {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}
