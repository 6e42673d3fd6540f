import ArgumentParser
import Dispatch
import Gallocy
import Logging

/// `gallocy bench alloc`: the layered allocator's fast path (small blocks, no arena refill) against
/// the system malloc in the same process, as ns per allocate + free pair and their ratio.
struct BenchAllocCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alloc",
        abstract: "Time small-block allocate + free through the shared allocator against malloc.",
        discussion: """
            Starts a one-member cluster in a temporary directory, attaches the layered allocator \
            (docs/allocator.md), runs each case once untimed (so that no arena, slab or page fault \
            is needed after), then times --rounds rounds of --pairs allocate + free pairs through \
            allocateLocally/freeLocally and through malloc/free. Medians. The issue's goal: within \
            5x of malloc.
            """)

    @Option(help: "Allocate + free pairs per round and case.") var pairs = 1_000_000
    @Option(help: "Rounds; the median is printed.") var rounds = 5
    @Option(help: "Blocks per batch in the batch cases.") var batch = 1000

    func validate() throws {
        guard pairs > 0, rounds > 0, rounds <= 64, batch > 0, batch <= 1 << 20 else {
            throw ValidationError("--pairs, --rounds (<= 64) and --batch must be positive")
        }
    }

    func run() throws {
        let pairs = self.pairs
        let rounds = self.rounds
        let batch = self.batch
        let box = OutcomeBox()
        let done = DispatchSemaphore(value: 0)
        Task {
            defer { done.signal() }
            do {
                let outcome = try await AllocatorBenchmark.run(
                    pairs: pairs, rounds: rounds, batch: batch, logger: Logger(label: "gallocy.bench"))
                box.set(.success(outcome))
            } catch { box.set(.failure(error)) }
        }
        done.wait()
        let outcome: AllocatorBenchmark.Outcome
        switch box.get() {
        case .success(let value): outcome = value
        case .failure(let error): throw ValidationError("\(error)")
        case nil: throw ValidationError("the benchmark did not finish")
        }
        print("pairs \(pairs) per round, rounds \(rounds) (medians, ns per allocate + free pair)")
        print("case                              shared     malloc    ratio    shared pairs/s")
        for row in outcome.rows {
            let name = row.name + String(repeating: " ", count: max(0, 30 - row.name.count))
            print("\(name) \(pad(row.sharedNs, 9)) \(pad(row.mallocNs, 10)) \(pad(row.ratio, 8)) \(pad(1e9 / row.sharedNs, 17, digits: 0))")
        }
        print("slow paths taken in timed rounds: \(outcome.slowPaths); arenas: \(outcome.arenas)")
    }

    private func pad(_ value: Double, _ width: Int, digits: Int = 1) -> String {
        let text = digits == 0 ? String(Int(value.rounded())) : String(Double(Int((value * 10).rounded())) / 10)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

/// The benchmark's result, handed from its task to the command's thread. `@unchecked Sendable`:
/// written once before the semaphore is signalled, read after it is waited for.
private final class OutcomeBox: @unchecked Sendable {
    private var value: Result<AllocatorBenchmark.Outcome, any Error>?
    func set(_ result: Result<AllocatorBenchmark.Outcome, any Error>) { value = result }
    func get() -> Result<AllocatorBenchmark.Outcome, any Error>? { value }
}
