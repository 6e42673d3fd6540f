import GallocyCodec
import GallocyRaft

/// `gallocy example matmul`: C = A x B on UInt64 matrices (wrapping arithmetic, so the result is
/// exact whatever the order of the additions), with A and B generated from a seed. The rows of C
/// are cut into tasks of a few rows; members take tasks from a shared ticket counter
/// (`atomicAdd`), claim each with a compare-and-swap on its state word, write their rows of C with
/// plain stores and publish them with `commit()`. At the end every process recomputes the
/// product serially from the seed and compares the shared C with it exactly.
///
/// The job lives in one block at the root "example.matmul" (`root(named:orCreate:)` creates it
/// and publishes A and B):
///
///     page 0, words:  0 magic "MATMUL01"   1 n   2 k   3 m   4 seed   5 rows per task
///                     6 tasks   7 participants   8 next ticket (atomicAdd)
///                     9, 10, 11: offsets of A (n x k), B (k x m), C (n x m)
///                     128 + i: state of task i: 0 free, the claimant's id, or
///                              its id | 1 << 63 once done
///
/// A task's rows of C and its "done" state are stored by plain stores and published by one
/// `commit()`: one Raft entry, so they become visible together, on every member, or not at all.
///
/// Resuming after SIGKILL: a claim is a committed compare-and-swap, so it survives the claimant;
/// the claimant's rows of C do not, unless their commit went through, and then the task is done.
/// A restarted member therefore first redoes every task that is still claimed by its own id (it
/// died working on it). A ticket taken just before a crash, and never claimed, leaves its task
/// free: every member sweeps the tasks for free ones after the counter runs out, so someone
/// (at the latest the restarted member itself) claims it. Recomputing a task writes the same
/// bytes, so doing one twice is harmless. A member arrives at the final barrier only when every
/// task it claimed is done, so once all have arrived every task is done.
package enum MatmulExample {
    package static let rootName = "example.matmul"
    package static let doneBarrierName = "example.matmul.done"
    static let magic = ExampleWords.magic("MATMUL01")
    static let taskStateWord = 128
    static let doneBit: UInt64 = 1 << 63

    package struct Shape: Sendable, Equatable {
        package var n: Int
        package var k: Int
        package var m: Int
        package var seed: UInt64
        package var rowsPerTask: Int

        package init(n: Int, k: Int, m: Int, seed: UInt64, rowsPerTask: Int) {
            self.n = n
            self.k = k
            self.m = m
            self.seed = seed
            self.rowsPerTask = rowsPerTask
        }

        package var tasks: Int { (n + rowsPerTask - 1) / rowsPerTask }

        package func problem(pageSize: Int) -> String? {
            if n < 1 || k < 1 || m < 1 || n > 1 << 13 || k > 1 << 13 || m > 1 << 13 {
                return "the dimensions must be in 1...8192 (got \(n) x \(k) times \(k) x \(m))"
            }
            if rowsPerTask < 1 { return "rows per task must be positive" }
            if taskStateWord + tasks > pageSize / 8 {
                return "\(tasks) tasks do not fit the job's first page; use more rows per task"
            }
            return nil
        }
    }

    /// A and B from the seed: A's n*k values, then B's k*m, from one SplitMix64 stream.
    package static func generate(_ shape: Shape, a: UnsafeMutablePointer<UInt64>, b: UnsafeMutablePointer<UInt64>) {
        var random = SplitMix64(seed: shape.seed)
        for x in 0..<(shape.n * shape.k) { a[x] = random.next() }
        for x in 0..<(shape.k * shape.m) { b[x] = random.next() }
    }

    /// Rows `rows` of C = A x B, each row accumulated privately and stored once.
    package static func multiply(
        a: UnsafePointer<UInt64>, b: UnsafePointer<UInt64>, into c: UnsafeMutablePointer<UInt64>, _ shape: Shape,
        rows: Range<Int>
    ) {
        var row = [UInt64](repeating: 0, count: shape.m)
        row.withUnsafeMutableBufferPointer { acc in
            for i in rows {
                for j in 0..<shape.m { acc[j] = 0 }
                for x in 0..<shape.k {
                    let factor = a[i * shape.k + x]
                    let bRow = b + x * shape.m
                    for j in 0..<shape.m { acc[j] = acc[j] &+ factor &* bRow[j] }
                }
                (c + i * shape.m).update(from: acc.baseAddress!, count: shape.m)
            }
        }
    }

    /// The whole product in private memory.
    package static func serial(_ shape: Shape) -> [UInt64] {
        var a = [UInt64](repeating: 0, count: shape.n * shape.k)
        var b = [UInt64](repeating: 0, count: shape.k * shape.m)
        var c = [UInt64](repeating: 0, count: shape.n * shape.m)
        a.withUnsafeMutableBufferPointer { a in
            b.withUnsafeMutableBufferPointer { b in generate(shape, a: a.baseAddress!, b: b.baseAddress!) }
        }
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    multiply(a: a.baseAddress!, b: b.baseAddress!, into: c.baseAddress!, shape, rows: 0..<shape.n)
                }
            }
        }
        return c
    }

    static func layout(_ shape: Shape, pageSize: Int) -> (a: Int, b: Int, c: Int, size: Int) {
        let a = pageSize
        let b = a + (shape.n * shape.k * 8).roundedUp(to: pageSize)
        let c = b + (shape.k * shape.m * 8).roundedUp(to: pageSize)
        return (a, b, c, c + (shape.n * shape.m * 8).roundedUp(to: pageSize))
    }

    /// The job as found in the heap.
    package struct Job {
        package let words: ExampleWords
        package let shape: Shape
        package let participants: Int
        package let a: UnsafeMutablePointer<UInt64>
        package let b: UnsafeMutablePointer<UInt64>
        package let c: UnsafeMutablePointer<UInt64>

        package init(block: UnsafeMutableRawPointer, pageSize: Int) throws(MemberError) {
            words = ExampleWords(block)
            guard words[0] == MatmulExample.magic else {
                throw MemberError(.invalidArgument, "root \(MatmulExample.rootName) does not hold a matmul job")
            }
            shape = Shape(
                n: Int(words[1]), k: Int(words[2]), m: Int(words[3]), seed: words[4], rowsPerTask: Int(words[5]))
            participants = Int(words[7])
            if let problem = shape.problem(pageSize: pageSize) {
                throw MemberError(.invalidArgument, "the job in the heap: \(problem)")
            }
            a = (block + Int(words[9])).assumingMemoryBound(to: UInt64.self)
            b = (block + Int(words[10])).assumingMemoryBound(to: UInt64.self)
            c = (block + Int(words[11])).assumingMemoryBound(to: UInt64.self)
        }

        package func state(_ task: Int) -> UInt64 { words[MatmulExample.taskStateWord + task] }
        package func stateWord(_ task: Int) -> UnsafeMutablePointer<UInt64> {
            words.pointer(MatmulExample.taskStateWord + task)
        }
        package func rows(of task: Int) -> Range<Int> {
            (task * shape.rowsPerTask)..<min(shape.n, (task + 1) * shape.rowsPerTask)
        }
    }

    package static func run(_ job: ExampleJob, shape requested: Shape) async throws -> ExampleOutcome {
        let member = job.member
        try job.requireAtMostMaxParticipants("matmul")
        let pageSize = Int(member.settings.pageSize)
        if let problem = requested.problem(pageSize: pageSize) { throw MemberError(.invalidArgument, problem) }
        let (aOffset, bOffset, cOffset, size) = layout(requested, pageSize: pageSize)
        let participants = job.participants
        let block = try await member.root(named: rootName, orCreate: size) { raw in
            let words = ExampleWords(raw)
            words[0] = magic
            words[1] = UInt64(requested.n)
            words[2] = UInt64(requested.k)
            words[3] = UInt64(requested.m)
            words[4] = requested.seed
            words[5] = UInt64(requested.rowsPerTask)
            words[6] = UInt64(requested.tasks)
            words[7] = UInt64(participants)
            words[9] = UInt64(aOffset)
            words[10] = UInt64(bOffset)
            words[11] = UInt64(cOffset)
            generate(
                requested, a: (raw + aOffset).assumingMemoryBound(to: UInt64.self),
                b: (raw + bOffset).assumingMemoryBound(to: UInt64.self))
        }
        let state = try Job(block: block, pageSize: pageSize)
        guard state.participants == participants else {
            throw MemberError(
                .invalidArgument,
                "the job in the heap is for \(state.participants) members; this process was given \(participants)")
        }
        let shape = state.shape
        let tasks = shape.tasks
        let me = member.id
        let clock = ContinuousClock()
        let started = clock.now
        var doneHere = 0
        var redone = 0
        var progressStep = max(1, tasks / 10)
        if progressStep > tasks { progressStep = tasks }

        func perform(_ task: Int) async throws(MemberError) {
            // The rows and "done" in one release; written again if a failed release was not
            // published (the same bytes each time).
            try await job.commit {
                multiply(a: state.a, b: state.b, into: state.c, shape, rows: state.rows(of: task))
                state.words[MatmulExample.taskStateWord + task] = me | doneBit
            }
            doneHere += 1
            let done = (0..<tasks).reduce(0) { $0 + (state.state($1) & doneBit != 0 ? 1 : 0) }
            if done % progressStep == 0 { job.progress(done, of: tasks, "tasks") }
        }

        /// Claims a free task; true if it is ours (also when a repeated claim finds our own id).
        func claim(_ task: Int) async throws(MemberError) -> Bool {
            let result = try await job.retrying { () async throws(MemberError) in
                try await member.compareAndSwap(state.stateWord(task), expected: 0, desired: me)
            }
            return result.exchanged || result.old == me
        }

        // 1. Tasks we claimed before a crash and did not finish.
        for task in 0..<tasks where state.state(task) == me {
            try await perform(task)
            redone += 1
        }
        // 2. Tickets from the shared counter.
        while true {
            let ticket = try await job.retrying { () async throws(MemberError) in
                try await member.atomicAdd(state.words.pointer(8), 1)
            }
            if ticket >= UInt64(tasks) { break }
            if try await claim(Int(ticket)) { try await perform(Int(ticket)) }
        }
        // 3. Tasks whose ticket was taken by a process that died before claiming them.
        for task in 0..<tasks where state.state(task) == 0 {
            if try await claim(task) { try await perform(task) }
        }
        let computeTime = started.duration(to: clock.now)
        try await job.barrier(doneBarrierName, generation: 0)

        // Every task is done and published: check C exactly.
        var notDone = 0
        for task in 0..<tasks where state.state(task) & doneBit == 0 { notDone += 1 }
        let expected = serial(shape)
        var differing = 0
        var checksum: UInt64 = 0
        expected.withUnsafeBufferPointer { reference in
            for x in 0..<(shape.n * shape.m) {
                checksum = (checksum &* 0x100_0000_01B3) ^ state.c[x]
                if state.c[x] != reference[x] { differing += 1 }
            }
        }
        var byMember: [String: JSONValue] = [:]
        for id in job.memberIDs {
            byMember["\(id)"] = .uint(UInt64((0..<tasks).filter { state.state($0) == id | doneBit }.count))
        }
        return ExampleOutcome(
            ok: differing == 0 && notDone == 0,
            fields: [
                "n": .uint(UInt64(shape.n)), "k": .uint(UInt64(shape.k)), "m": .uint(UInt64(shape.m)),
                "seed": .uint(shape.seed), "tasks": .uint(UInt64(tasks)), "tasks_here": .uint(UInt64(doneHere)),
                "tasks_redone_after_restart": .uint(UInt64(redone)), "tasks_by_member": .object(byMember),
                "tasks_not_done": .uint(UInt64(notDone)), "differing_cells": .uint(UInt64(differing)),
                "checksum": .string("0x" + String(checksum, radix: 16)),
                "seconds": .double(
                    Double(computeTime.components.seconds) + Double(computeTime.components.attoseconds) / 1e18),
            ])
    }
}
