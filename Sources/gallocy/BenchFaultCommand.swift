import ArgumentParser
import GallocyRuntime

/// `gallocy bench fault`: the heap's first-write fault (twin copy, dirty bit, mprotect, in the C
/// handler) against a raw fault whose handler only mprotects the page, on this machine.
struct BenchFaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fault",
        abstract: "Time the heap's first-write fault against a raw fault + mprotect, per page.",
        discussion: """
            Maps a heap at --base, reads every page, then writes one byte per page and times the \
            faults; the raw figure is the same loop over anonymous pages with a handler that only \
            calls mprotect. Medians over --rounds. The issue's goal: within 2x of the raw fault. \
            --checkerboard also writes every other page of a heap of 2 * vm.max_map_count + 2048 \
            pages and times the first and the last writes (past the limit a page's group of 64 is \
            coalesced into one writable mapping) and the release.
            """
    )

    @Option(help: "Pages per round.")
    var pages = 4096

    @Option(help: "Rounds; the median is printed.")
    var rounds = 7

    @Flag(help: "Also write every other page of a heap past vm.max_map_count (the coalescing fallback).")
    var checkerboard = false

    @Option(help: "Heap base address (hexadecimal).")
    var base = String(SharedHeap.defaultBase, radix: 16)

    func validate() throws {
        guard pages > 0, pages <= 1 << 20 else { throw ValidationError("--pages must be between 1 and \(1 << 20)") }
        guard rounds > 0, rounds <= 64 else { throw ValidationError("--rounds must be between 1 and 64") }
        guard UInt(base.hasPrefix("0x") ? String(base.dropFirst(2)) : base, radix: 16) != nil else {
            throw ValidationError("--base must be a hexadecimal address, not \(base)")
        }
    }

    func run() throws {
        let address = UInt(base.hasPrefix("0x") ? String(base.dropFirst(2)) : base, radix: 16)!
        let figures: FaultBenchmark.Figures
        do {
            figures = try FaultBenchmark.run(base: address, pages: pages, rounds: rounds)
        } catch {
            throw ValidationError(error.message)
        }
        print("pages \(pages), rounds \(rounds) (medians, ns per page)")
        print("first-write fault (twin + dirty + mprotect)  \(Int(figures.firstWriteNs.rounded()))")
        print("raw fault + mprotect                         \(Int(figures.rawFaultNs.rounded()))")
        print("ratio                                        \((figures.ratio * 100).rounded() / 100)")
        guard checkerboard else { return }
        let board: FaultBenchmark.Checkerboard
        do {
            board = try FaultBenchmark.checkerboard(base: address, rounds: min(rounds, 5))
        } catch {
            throw ValidationError(error.message)
        }
        print(
            "checkerboard: \(board.pages) pages, every other one written (vm.max_map_count \(board.maxMapCount)), \(board.coalescedGroups) groups coalesced"
        )
        print("first write, first \(board.window) written pages       \(Int(board.belowLimitNs.rounded()))")
        print("first write, last \(board.window) (past the limit)     \(Int(board.pastLimitNs.rounded()))")
        print("release, per released page (\(board.released) pages)  \(Int(board.releaseNsPerPage.rounded()))")
    }
}
