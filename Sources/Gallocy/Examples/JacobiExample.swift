import GallocyCodec
import Logging

/// `gallocy example jacobi`: a 2-D heat stencil (Jacobi iteration) on a grid of Doubles, its rows
/// banded across the participants, with a barrier between iterations. At the end every process
/// recomputes the whole run serially in private memory and compares the shared grid with it bit
/// for bit.
///
/// The job lives in one block at the root "example.jacobi", created once by whichever member
/// gets there first (`root(named:orCreate:)`, which also publishes the initial grid):
///
///     page 0, words:  0 magic "JACOBI01"   1 rows   2 cols   3 iterations   4 participants
///                     5 offset of grid 0   6 offset of grid 1
///                     8 + r: iterations completed by the member of rank r (r < 64)
///     grid 0, grid 1: rows x cols Doubles, row-major, each starting on a page
///
/// Iteration t reads grid t % 2 and writes grid (t + 1) % 2 (double buffering). The edges are
/// fixed (the same in both grids), the interior rows 1 ..< rows - 1 are split into one band per
/// participant by rank (the position of its id among the sorted ids). An iteration of a member:
/// compute its band into the other grid, store `t + 1` as its progress, then
/// `barrier("example.jacobi", generation: t)`, which publishes both in one entry and waits for
/// the others.
///
/// Resuming after SIGKILL: a restarted member reads its progress p from the heap. If it died
/// before its iteration's release committed, p is still t: nothing of its band was published, and
/// the grid it reads (t % 2) cannot have changed, since nobody writes it before everyone (it
/// included) arrived at generation t. So it recomputes the same band from the same input and
/// gets the same bytes. If the release committed (p = t + 1), it arrives again at generation
/// p - 1: counted once if it had arrived, returned at once if that generation opened already.
/// Either way it goes on with iteration p, exactly where it was.
package enum JacobiExample {
    package static let rootName = "example.jacobi"
    package static let barrierName = "example.jacobi"
    package static let doneBarrierName = "example.jacobi.done"
    static let magic = ExampleWords.magic("JACOBI01")
    static let progressWord = 8

    package struct Shape: Sendable, Equatable {
        package var rows: Int
        package var cols: Int
        package var iterations: Int

        package init(rows: Int, cols: Int, iterations: Int) {
            self.rows = rows
            self.cols = cols
            self.iterations = iterations
        }

        package var problem: String? {
            if rows < 3 || cols < 3 { return "the grid must be at least 3 x 3 (got \(rows) x \(cols))" }
            if rows > 1 << 14 || cols > 1 << 14 { return "the grid may be at most 16384 x 16384" }
            if iterations < 1 || iterations > 1 << 20 { return "iterations must be in 1...1048576" }
            return nil
        }

        var cells: Int { rows * cols }
    }

    /// The fixed edges: top 100, left 75, right 50, bottom 0; the interior starts at 0.
    package static func initialize(_ grid: UnsafeMutablePointer<Double>, _ shape: Shape) {
        for i in 0..<shape.rows {
            for j in 0..<shape.cols {
                let value: Double
                if i == 0 {
                    value = 100
                } else if i == shape.rows - 1 {
                    value = 0
                } else if j == 0 {
                    value = 75
                } else if j == shape.cols - 1 {
                    value = 50
                } else {
                    value = 0
                }
                grid[i * shape.cols + j] = value
            }
        }
    }

    /// One Jacobi step on rows `band` (interior rows only). The serial run and every member call
    /// this same function, so the order of the floating-point operations is the same and the
    /// results are bit-identical.
    package static func relax(
        from source: UnsafePointer<Double>, into target: UnsafeMutablePointer<Double>, cols: Int, rows band: Range<Int>
    ) {
        for i in band {
            let up = source + (i - 1) * cols
            let row = source + i * cols
            let down = source + (i + 1) * cols
            let out = target + i * cols
            for j in 1..<(cols - 1) {
                out[j] = 0.25 * ((up[j] + down[j]) + (row[j - 1] + row[j + 1]))
            }
        }
    }

    /// Interior rows of the member of `rank` among `participants`.
    package static func band(rank: Int, participants: Int, rows: Int) -> Range<Int> {
        let interior = rows - 2
        return (1 + rank * interior / participants)..<(1 + (rank + 1) * interior / participants)
    }

    /// The whole run in private memory: the grid after `iterations` steps.
    package static func serial(_ shape: Shape) -> [Double] {
        var a = [Double](repeating: 0, count: shape.cells)
        var b = a
        a.withUnsafeMutableBufferPointer { initialize($0.baseAddress!, shape) }
        b.withUnsafeMutableBufferPointer { initialize($0.baseAddress!, shape) }
        for _ in 0..<shape.iterations {
            a.withUnsafeBufferPointer { src in
                b.withUnsafeMutableBufferPointer { dst in
                    relax(from: src.baseAddress!, into: dst.baseAddress!, cols: shape.cols, rows: 1..<(shape.rows - 1))
                }
            }
            swap(&a, &b)
        }
        return a
    }

    /// Where grid 0 and grid 1 start in the block, and the block's size.
    static func layout(_ shape: Shape, pageSize: Int) -> (grid0: Int, grid1: Int, size: Int) {
        let gridBytes = (shape.cells * 8).roundedUp(to: pageSize)
        let grid0 = pageSize
        return (grid0, grid0 + gridBytes, grid0 + 2 * gridBytes)
    }

    /// The job as found in the heap (the shape there wins over the flags of a restarted process).
    package struct Job {
        package let words: ExampleWords
        package let shape: Shape
        package let participants: Int
        package let grids: [UnsafeMutablePointer<Double>]

        package init(block: UnsafeMutableRawPointer) throws(MemberError) {
            words = ExampleWords(block)
            guard words[0] == JacobiExample.magic else {
                throw MemberError(.invalidArgument, "root \(JacobiExample.rootName) does not hold a jacobi job")
            }
            shape = Shape(rows: Int(words[1]), cols: Int(words[2]), iterations: Int(words[3]))
            participants = Int(words[4])
            if let problem = shape.problem { throw MemberError(.invalidArgument, "the job in the heap: \(problem)") }
            let cells = shape.cells
            grids = [Int(words[5]), Int(words[6])].map { (block + $0).bindMemory(to: Double.self, capacity: cells) }
        }

        package func progress(rank: Int) -> Int { Int(words[JacobiExample.progressWord + rank]) }
    }

    package static func run(_ job: ExampleJob, shape requested: Shape) async throws -> ExampleOutcome {
        let member = job.member
        try job.requireAtMostMaxParticipants("jacobi")
        let pageSize = Int(member.settings.pageSize)
        let (grid0, grid1, size) = layout(requested, pageSize: pageSize)
        let participants = job.participants
        let block = try await member.root(named: rootName, orCreate: size) { raw in
            let words = ExampleWords(raw)
            words[0] = magic
            words[1] = UInt64(requested.rows)
            words[2] = UInt64(requested.cols)
            words[3] = UInt64(requested.iterations)
            words[4] = UInt64(participants)
            words[5] = UInt64(grid0)
            words[6] = UInt64(grid1)
            initialize((raw + grid0).bindMemory(to: Double.self, capacity: requested.cells), requested)
            initialize((raw + grid1).bindMemory(to: Double.self, capacity: requested.cells), requested)
        }
        let state = try Job(block: block)
        guard state.participants == participants else {
            throw MemberError(
                .invalidArgument,
                "the job in the heap is for \(state.participants) members; this process was given \(participants)")
        }
        let shape = state.shape
        if shape != requested {
            job.logger.notice(
                "the job in the heap is \(shape.rows) x \(shape.cols), \(shape.iterations) iterations: using it")
        }
        let rank = job.rank
        let band = band(rank: rank, participants: participants, rows: shape.rows)
        let clock = ContinuousClock()
        let started = clock.now

        let resumedAt = state.progress(rank: rank)
        if resumedAt > 0 {
            // Our release of iteration resumedAt - 1 committed; the arrival may not have.
            try await job.barrier(barrierName, generation: UInt64(resumedAt - 1))
        }
        let step = max(1, shape.iterations / 10)
        for t in resumedAt..<shape.iterations {
            try await job.barrier(barrierName, generation: UInt64(t)) {
                relax(from: state.grids[t % 2], into: state.grids[(t + 1) % 2], cols: shape.cols, rows: band)
                state.words[progressWord + rank] = UInt64(t + 1)
            }
            if (t + 1) % step == 0 || t + 1 == shape.iterations {
                job.progress(t + 1, of: shape.iterations, "iterations")
            }
        }
        let computeTime = started.duration(to: clock.now)

        // Every band of the last iteration is visible (the last barrier opened): check it all.
        let expected = serial(shape)
        let final = state.grids[shape.iterations % 2]
        var differing = 0
        var firstDifference: Int?
        var checksum: UInt64 = 0
        expected.withUnsafeBufferPointer { reference in
            for k in 0..<shape.cells {
                let bits = final[k].bitPattern
                checksum = (checksum &* 0x100_0000_01B3) ^ bits
                if bits != reference[k].bitPattern {
                    differing += 1
                    if firstDifference == nil { firstDifference = k }
                }
            }
        }
        var sum = 0.0
        for i in 1..<(shape.rows - 1) { for j in 1..<(shape.cols - 1) { sum += final[i * shape.cols + j] } }
        let mean = sum / Double((shape.rows - 2) * (shape.cols - 2))
        // Nobody leaves before everyone has checked: the others may still need this member's vote.
        try await job.barrier(doneBarrierName, generation: 0)
        var fields: [String: JSONValue] = [
            "rows": .uint(UInt64(shape.rows)), "cols": .uint(UInt64(shape.cols)),
            "iterations": .uint(UInt64(shape.iterations)), "band": .string("\(band.lowerBound)..<\(band.upperBound)"),
            "resumed_at_iteration": .uint(UInt64(resumedAt)), "differing_cells": .uint(UInt64(differing)),
            "mean_interior_temperature": .double(mean), "checksum": .string("0x" + String(checksum, radix: 16)),
            "seconds": .double(
                Double(computeTime.components.seconds) + Double(computeTime.components.attoseconds) / 1e18),
        ]
        if let firstDifference {
            fields["first_difference"] = .string(
                "row \(firstDifference / shape.cols), col \(firstDifference % shape.cols)")
        }
        return ExampleOutcome(ok: differing == 0, fields: fields)
    }
}
