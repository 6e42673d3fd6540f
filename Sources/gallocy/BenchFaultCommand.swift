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
            calls mprotect. Medians over --rounds. The issue's goal: within 2x of the raw fault.
            """
    )

    @Option(help: "Pages per round.")
    var pages = 4096

    @Option(help: "Rounds; the median is printed.")
    var rounds = 7

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
    }
}
