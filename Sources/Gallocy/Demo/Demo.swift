import Crypto
import Foundation
import GallocyStateMachine

#if canImport(Glibc)
    import Glibc
#endif

/// `gallocy demo` (CONTRACT.md 1.2): a local cluster of three processes that share one heap,
/// two workloads on it, one member killed with SIGKILL in the middle of the second and started
/// again, and at the end a check that the three members' heaps are byte-identical and hold the
/// right results. It tells what happens as it goes, in plain words.
///
/// Each process is `gallocy example <name>`: a full cluster member (the same engine as
/// `gallocy node`, with its Raft log in its own LMDB directory) and the application at once.
/// The workloads are `counter` (increments under a lock) and `jacobi` (a stencil with a barrier
/// per iteration); their state lives in the shared heap, reached through named roots, which is
/// what lets a killed member resume. The heaps are compared offline afterwards, from each
/// member's own data directory, with the log tool's replay.
package final class Demo {
    package struct Options: Sendable {
        /// The `gallocy` executable to start the members with (this one, by default).
        package var executable = DemoProcesses.ownExecutable()
        package var heapSize = "64M"
        package var counterTarget: UInt64 = 150
        package var jacobi = JacobiExample.Shape(rows: 128, cols: 128, iterations: 150)
        /// The kill comes once a member reports this fraction of the iterations done.
        package var killAtFraction = 0.3
        package var restartDelay: Duration = .seconds(1)
        /// How long one workload may take before the demo gives up.
        package var phaseTimeout: Duration = .seconds(240)

        package init() {}
    }

    private struct MemberSpec {
        var id: Int
        var listenPort: UInt16
        var httpPort: UInt16
        var data: String
    }

    let options: Options
    let processes: DemoProcesses
    let say: (String) -> Void
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private let members: [MemberSpec]
    /// The leader as the members' HTTP APIs last told it.
    private var lastLeader: Int?

    /// `say` receives every line to print, in order.
    package init(options: Options, processes: DemoProcesses, say: @escaping (String) -> Void) throws(DemoError) {
        self.options = options
        self.processes = processes
        self.say = say
        self.started = clock.now
        let ports = try DemoProcesses.freePorts(6)
        members = (1...3).map { id in
            MemberSpec(
                id: id, listenPort: ports[2 * (id - 1)], httpPort: ports[2 * (id - 1) + 1],
                data: "\(processes.directory)/member\(id)")
        }
    }

    // MARK: - Telling

    private func elapsed() -> String {
        let d = started.duration(to: clock.now)
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        return String(format: "[%6.1fs]", seconds)
    }

    private func event(_ text: String) { say("\(elapsed()) \(text)") }
    private func note(_ text: String) { say("          \(text)") }
    private func heading(_ text: String) {
        say("")
        say(text)
    }

    // MARK: - The run

    package func run() throws(DemoError) {
        say("Gallocy demo: three processes on this machine share one heap, at the same addresses.")
        note("Every change to the heap is an entry in a Raft log that each member keeps in LMDB on disk.")
        note("Working directory: \(processes.directory) (removed at the end).")
        note(
            "Members 1, 2, 3 talk Raft on 127.0.0.1 ports \(members.map { "\($0.listenPort)" }.joined(separator: ", "))."
        )

        heading("Step 1 of 4: a shared counter, incremented under a lock")
        note("Each process is a full cluster member *and* the application. They take turns holding the")
        note("lock \"example.counter\", add 1 to a counter in shared memory with a plain store, and release")
        note("the lock, which publishes the store (one Raft entry). Target: \(options.counterTarget).")
        let counter = try runWorkload(
            "counter", ["--target", "\(options.counterTarget)"], killing: false,
            describe: { id, line in
                "member \(id): counter reached \(line["value"]?.uint64Value ?? 0), "
                    + "\(line["increments_here"]?.uint64Value ?? 0) increments made here"
            })
        _ = counter

        let shape = options.jacobi
        heading("Step 2 of 4: a heat simulation (Jacobi stencil) on a shared grid, with a crash")
        note("The same three data directories: the cluster, its log and its heap carry on.")
        note("A \(shape.rows) x \(shape.cols) grid of Doubles lives in the heap, twice (read one, write the other).")
        note("Each member computes its band of rows for an iteration, then waits at a barrier that")
        note("publishes its band and lets everyone see the others' bands. \(shape.iterations) iterations.")
        note("Each member's progress is in the heap too; that is what lets a killed member resume.")
        _ = try runWorkload(
            "jacobi",
            ["--rows", "\(shape.rows)", "--cols", "\(shape.cols)", "--iterations", "\(shape.iterations)"],
            killing: true,
            describe: { id, line in
                let resumed = line["resumed_at_iteration"]?.uint64Value ?? 0
                return "member \(id): grid equals a serial run bit for bit, "
                    + (resumed > 0 ? "resumed at iteration \(resumed), " : "")
                    + "rows \(line["band"]?.stringValue ?? "?") were its band"
            })

        heading("Step 3 of 4: are the three heaps identical?")
        note("Every member has stopped. For each one, the log tool rebuilds the heap from that member's")
        note("own data directory alone (snapshot + log replay, the very code the members run).")
        let replays = try compareHeaps()

        heading("Step 4 of 4: are the results right?")
        try checkResults(replays)

        say("")
        event("Success: the three members agree byte for byte, and the results are correct, although")
        note("one member was killed in the middle of the work and had to catch up from its own disk.")
    }

    // MARK: - Workloads

    private func arguments(_ example: String, _ member: MemberSpec, extra: [String]) -> [String] {
        var arguments = [
            "example", example, "--id", "\(member.id)", "--data", member.data,
            "--listen", "127.0.0.1:\(member.listenPort)", "--http", "127.0.0.1:\(member.httpPort)",
            "--heap-size", options.heapSize, "--log-level", "error",
        ]
        for peer in members where peer.id != member.id {
            arguments += ["--peer", "\(peer.id)=127.0.0.1:\(peer.listenPort)"]
        }
        return arguments + extra
    }

    private func outputPath(_ example: String, _ id: Int) -> String { "\(processes.directory)/\(example)-\(id).out" }
    private func errorPath(_ example: String, _ id: Int) -> String { "\(processes.directory)/\(example)-\(id).err" }

    private func start(_ example: String, _ member: MemberSpec, extra: [String]) throws(DemoError)
        -> DemoProcesses.Child
    {
        try processes.spawn(
            options.executable, arguments(example, member, extra: extra), name: "member \(member.id)",
            standardOutput: outputPath(example, member.id), standardError: errorPath(example, member.id))
    }

    /// Starts the three members on `example`, optionally kills the leader once the work is
    /// under way and starts it again, waits for all three, and returns their JSON lines by id.
    @discardableResult
    private func runWorkload(
        _ example: String, _ extra: [String], killing: Bool, describe: (Int, [String: JSONValue]) -> String
    ) throws(DemoError) -> [Int: [String: JSONValue]] {
        var children: [Int: DemoProcesses.Child] = [:]
        for member in members { children[member.id] = try start(example, member, extra: extra) }
        event(
            "started \(children.keys.sorted().map { "member \($0) (pid \(children[$0]!.pid))" }.joined(separator: ", ")): `gallocy example \(example)`"
        )
        let phaseStart = clock.now
        var killed = !killing
        var reportedLeader = false
        let deadline = clock.now.advanced(by: options.phaseTimeout)
        while true {
            let running = members.filter { processes.status(children[$0.id]!) == nil }
            if running.isEmpty { break }
            if clock.now >= deadline {
                throw DemoError(
                    "`gallocy example \(example)` did not finish within \(options.phaseTimeout); logs: \(processes.directory)"
                )
            }
            // A member that failed while the others run: no use waiting for the rest.
            for member in members {
                if let status = processes.status(children[member.id]!), status != 0 {
                    throw failure(example, member.id, status: status)
                }
            }
            if !reportedLeader, let leader = leader() {
                reportedLeader = true
                event("the members elected member \(leader) as the Raft leader")
            }
            if !killed, let (done, total) = members.compactMap({ progress(example, $0.id) }).max(by: { $0.0 < $1.0 }),
                Double(done) >= options.killAtFraction * Double(total)
            {
                killed = true
                let current = leader()
                let victim = members.first { $0.id == current } ?? members[1]
                event("\(done) of \(total) iterations are done. Now the crash:")
                processes.kill(children[victim.id]!)
                event(
                    "killed member \(victim.id) with SIGKILL (no warning, no cleanup; it was "
                        + "\(victim.id == current ? "the Raft leader" : "a follower")).")
                note("The other two still form a majority: they elect a leader if needed and keep their")
                note("committed state; they wait at the next barrier for the missing member.")
                try? sleepFor(options.restartDelay)
                children[victim.id] = try start(example, victim, extra: extra)
                event("restarted member \(victim.id) with the same flags (pid \(children[victim.id]!.pid)).")
                note("It rebuilds its heap from its own log, catches up from the others, finds the job")
                note("through the named root, reads its progress from the heap and carries on from there.")
            }
            usleep(50_000)
        }
        var lines: [Int: [String: JSONValue]] = [:]
        for member in members {
            let status = processes.status(children[member.id]!) ?? -1
            guard status == 0 else { throw failure(example, member.id, status: status) }
            guard let line = lastJSONLine(outputPath(example, member.id)) else {
                throw DemoError("member \(member.id) printed no result line; see \(outputPath(example, member.id))")
            }
            guard line["ok"]?.boolValue == true else {
                throw DemoError(
                    "member \(member.id) found a wrong result: \(String(decoding: JSONValue.object(line).serialized(), as: UTF8.self))"
                )
            }
            lines[member.id] = line
        }
        let took = phaseStart.duration(to: clock.now)
        event("all three processes exited with status 0 after \(Self.format(took)); each checked the result itself:")
        for id in lines.keys.sorted() { note(describe(id, lines[id]!)) }
        return lines
    }

    private func leader() -> Int? {
        for member in members {
            let connection = BenchConnection(port: member.httpPort)
            guard connection.send("GET", "/v1/status") == 200, let body = connection.lastBody,
                let status = try? JSONParser.parse(body).objectValue, let leader = status["leader"]?.uint64Value,
                leader > 0
            else { continue }
            lastLeader = Int(leader)
            return Int(leader)
        }
        return nil
    }

    private func progress(_ example: String, _ id: Int) -> (Int, Int)? {
        guard let text = try? String(contentsOfFile: errorPath(example, id), encoding: .utf8) else { return nil }
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("progress: ") }) else { return nil }
        let fraction = line.dropFirst("progress: ".count).split(separator: " ").first ?? ""
        let parts = fraction.split(separator: "/")
        guard parts.count == 2, let done = Int(parts[0]), let total = Int(parts[1]), total > 0 else { return nil }
        return (done, total)
    }

    private func failure(_ example: String, _ id: Int, status: Int32) -> DemoError {
        let text = (try? String(contentsOfFile: errorPath(example, id), encoding: .utf8)) ?? ""
        let tail = text.split(separator: "\n").suffix(8).joined(separator: "\n    ")
        return DemoError(
            "member \(id) (`gallocy example \(example)`) exited with status \(status); the end of its log:\n    \(tail)"
        )
    }

    private func lastJSONLine(_ path: String) -> [String: JSONValue]? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n").reversed() where line.hasPrefix("{") {
            if let object = try? JSONParser.parse(String(line)).objectValue { return object }
        }
        return nil
    }

    private func sleepFor(_ duration: Duration) throws {
        let (s, a) = duration.components
        usleep(UInt32(s * 1_000_000 + a / 1_000_000_000_000))
    }

    static func format(_ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return seconds < 1 ? String(format: "%.0f ms", seconds * 1000) : String(format: "%.1f s", seconds)
    }

    // MARK: - Checks

    private struct Replayed {
        var id: Int
        var directory: LogDirectory
        var replay: LogReplay
    }

    /// Replays every member's data directory to the last index all three committed and compares
    /// the heap images byte for byte (SHA-256) and the page tables (their canonical digests).
    private func compareHeaps() throws(DemoError) -> [Replayed] {
        var opened: [(Int, LogDirectory)] = []
        for member in members {
            do throws(LogToolError) {
                opened.append((member.id, try LogDirectory(path: member.data)))
            } catch {
                throw DemoError("cannot open member \(member.id)'s data directory: \(error.message)")
            }
        }
        let common = opened.map { $0.1.commitIndex }.min() ?? 0
        for (id, directory) in opened {
            note("member \(id): \(directory.commitIndex) log entries committed, as its own disk says")
        }
        var replays: [Replayed] = []
        var hashes: [String] = []
        var tables: [UInt32] = []
        for (id, directory) in opened {
            let began = clock.now
            let replay: LogReplay
            let table: UInt32
            do throws(LogToolError) {
                replay = try LogReplay(directory, to: common)
                table = try replay.digest().pageTable
            } catch {
                throw DemoError("replaying member \(id)'s log: \(error.message)")
            }
            guard let heap = replay.machine.heap else { throw DemoError("member \(id) has no heap at index \(common)") }
            let hash = SHA256.hash(data: UnsafeRawBufferPointer(start: heap.base, count: heap.size))
            let hex = hash.map { String(format: "%02x", $0) }.joined()
            hashes.append(hex)
            tables.append(table)
            replays.append(Replayed(id: id, directory: directory, replay: replay))
            event(
                "member \(id) at log index \(common): heap (\(heap.size >> 20) MiB) SHA-256 \(hex.prefix(16))…, "
                    + "page table digest \(String(format: "%08x", table)) (replayed in \(Self.format(began.duration(to: clock.now))))"
            )
        }
        guard Set(hashes).count == 1, Set(tables).count == 1 else {
            throw DemoError("the members' heaps differ at log index \(common): \(hashes) \(tables)")
        }
        note("Identical: at index \(common), the last one all three committed, every byte of the three heaps")
        note("and every row of the three page tables (allocations, locks, barriers, roots) agree.")
        return replays
    }

    /// Reads the results out of each member's heap as of its own commit index and checks them
    /// against a computation in this process.
    private func checkResults(_ replays: [Replayed]) throws(DemoError) {
        let shape = options.jacobi
        let serialStart = clock.now
        let expected = JacobiExample.serial(shape)
        let serialTime = serialStart.duration(to: clock.now)
        for var member in replays {
            do throws(LogToolError) {
                try member.replay.advance(member.directory, through: member.directory.commitIndex)
            } catch {
                throw DemoError("replaying member \(member.id)'s log to its end: \(error.message)")
            }
            do {
                try check(member.replay.machine, expected: expected)
            } catch let error as DemoError {
                throw DemoError("member \(member.id): \(error.message)")
            } catch {
                throw DemoError("member \(member.id): reading its heap: \(error)")
            }
            event(
                "member \(member.id) (log index \(member.directory.commitIndex)): counter = \(options.counterTarget) as targeted; "
                    + "the \(shape.rows) x \(shape.cols) grid after \(shape.iterations) iterations is bit-identical to a serial run"
            )
        }
        note("The serial run of the stencil took \(Self.format(serialTime)) in this one process. The three members")
        note("took longer: every iteration is a consensus round (a release and a barrier per member, each a")
        note("Raft entry written to disk on a majority). What they buy is that the work survives a crash.")
    }

    /// The counter and the final grid in `machine`'s heap, against the target and `expected`.
    private func check(_ machine: StateMachine, expected: [Double]) throws {
        guard let heap = machine.heap else { throw DemoError("there is no heap") }
        guard let counter = try machine.pageTable.root(name: CounterExample.rootName),
            let jacobi = try machine.pageTable.root(name: JacobiExample.rootName)
        else { throw DemoError("there is no root for the counter or for the jacobi job") }
        let target = try heap.word(at: counter)
        let value = try heap.word(at: counter + 8)
        guard target == options.counterTarget, value == target else {
            throw DemoError("the counter is \(value), not \(options.counterTarget)")
        }
        let word = { (k: Int) throws -> UInt64 in try heap.word(at: jacobi + UInt64(8 * k)) }
        let shape = options.jacobi
        let found = JacobiExample.Shape(rows: Int(try word(1)), cols: Int(try word(2)), iterations: Int(try word(3)))
        guard found == shape else { throw DemoError("the jacobi job is \(found), not \(shape)") }
        let final = jacobi + (try word(5 + shape.iterations % 2))
        let bytes = try heap.read(address: final, length: shape.rows * shape.cols * 8)
        var differing = 0
        bytes.withUnsafeBytes { raw in
            for k in 0..<expected.count
            where UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self))
                != expected[k].bitPattern
            {
                differing += 1
            }
        }
        guard differing == 0 else { throw DemoError("\(differing) cells of the final grid differ from the serial run") }
    }
}
