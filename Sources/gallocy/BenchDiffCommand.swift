import ArgumentParser
import GallocyCodec

/// `gallocy bench diff`: what a release costs per page on this machine: the twin copy a write
/// fault makes, the diff scan, the LZ4 compression, and applying a diff on another member.
struct BenchDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Time twin copies, page diffs with LZ4, and decompress+apply, per page.",
        discussion: """
            By default pages hold random bytes and the writes store random bytes (the worst case \
            for LZ4); --contents zeros sets the written bytes of a zeroed page to 1. Each case changes 1 %, 10 % or 100 % \
            of a page's bytes, either scattered (random positions) or contiguous (one run). Times are \
            the median of several batches, per page; build with -c release for meaningful figures.
            """
    )

    @Flag(help: "Fewer iterations: a rough figure in about a second.")
    var quick = false

    @Option(help: "Page size in bytes.")
    var pageSize = 4096

    @Option(help: "Seed of the random page contents and edits.")
    var seed: UInt64 = 1

    enum Contents: String, ExpressibleByArgument, CaseIterable {
        /// Random old bytes and random new bytes: nothing for LZ4 to find.
        case random
        /// A zeroed page whose written bytes become 1, like fresh flags: what LZ4 does with
        /// repetitive data.
        case zeros
    }

    @Option(help: "Page contents: random (incompressible) or zeros (a zeroed page whose written bytes become 1).")
    var contents: Contents = .random

    func validate() throws {
        guard pageSize >= 64, pageSize <= PageDiff.maxPageSize else {
            throw ValidationError("--page-size must be between 64 and \(PageDiff.maxPageSize), not \(pageSize)")
        }
    }

    func run() throws {
        // Many short batches: on a shared machine a batch that another process interrupts is an
        // outlier that the median discards, where long batches would all be slowed a little.
        let batches = quick ? 7 : 41
        let iterations = quick ? 500 : 2_000
        var bench = DiffBench(
            pageSize: pageSize, seed: seed, zeros: contents == .zeros, batches: batches, iterations: iterations)
        #if DEBUG
            print("note: this is a debug build; use `swift build -c release --product gallocy` for real figures")
        #endif
        let what = contents == .zeros ? "zeroed pages, written bytes set to 1" : "pages of random bytes"
        print("gallocy bench diff: \(pageSize)-byte \(what), median of \(batches) batches of \(iterations)")
        print("twin copy: \(DiffBench.format(bench.twinCopy())) µs per page")
        print("")
        let header = [
            pad("case", 20, left: true), pad("changed", 8), pad("runs", 6), pad("raw B", 7), pad("lz4 B", 7),
            pad("ratio", 6), pad("scan µs", 9), pad("diff+lz4 µs", 12), pad("apply µs", 9),
        ]
        print(header.joined(separator: " "))
        var cases: [(String, DiffBench.Edit)] = [("unchanged", .none)]
        for percent in [1, 10, 100] {
            cases.append(("\(percent) % scattered", .scattered(percent)))
            cases.append(("\(percent) % contiguous", .contiguous(percent)))
        }
        for (name, edit) in cases {
            let r = try bench.measure(edit)
            let ratio = r.compressed == 0 ? "-" : String(format1: Double(r.raw) / Double(r.compressed))
            print(
                [
                    pad(name, 20, left: true), pad("\(r.changed)", 8), pad("\(r.runs)", 6), pad("\(r.raw)", 7),
                    pad("\(r.compressed)", 7), pad(ratio, 6), pad(DiffBench.format(r.scan), 9),
                    pad(DiffBench.format(r.make), 12), pad(DiffBench.format(r.apply), 9),
                ].joined(separator: " "))
        }
        print("")
        print("scan: the run list alone; diff+lz4: PageDiff.make (scan and LZ4_compress_default);")
        print("apply: LZ4_decompress_safe, run checks and the copy into a page; ratio: raw run list / lz4 bytes.")
        if bench.sink == 0x5EED_5EED { print("") }  // keeps the timed work observable
    }

    private func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - text.count))
        return left ? text + fill : fill + text
    }
}

/// The timed work of `gallocy bench diff`, over page-aligned buffers. They are never freed: the
/// command runs once and exits.
private struct DiffBench {
    enum Edit {
        case none
        case scattered(Int)
        case contiguous(Int)
    }

    struct Figures {
        var changed = 0, runs = 0, raw = 0, compressed = 0
        var scan = 0.0, make = 0.0, apply = 0.0
    }

    let pageSize: Int
    let batches: Int
    let iterations: Int
    var rng: UInt64
    /// Folds in every result so that the optimizer cannot drop the timed calls.
    var sink = 0
    private let twin: UnsafeMutableRawBufferPointer
    private let page: UnsafeMutableRawBufferPointer
    private let scratch: UnsafeMutableRawBufferPointer

    /// Zeroed twin, and writes store 1; otherwise random bytes throughout.
    let zeros: Bool

    init(pageSize: Int, seed: UInt64, zeros: Bool, batches: Int, iterations: Int) {
        self.pageSize = pageSize
        self.zeros = zeros
        self.batches = batches
        self.iterations = iterations
        rng = seed
        twin = .allocate(byteCount: pageSize, alignment: 4096)
        page = .allocate(byteCount: pageSize, alignment: 4096)
        scratch = .allocate(byteCount: pageSize, alignment: 4096)
        for i in 0..<pageSize { twin[i] = zeros ? 0 : UInt8(truncatingIfNeeded: next()) }
    }

    /// SplitMix64: reproducible contents from `--seed`.
    mutating func next() -> UInt64 {
        rng &+= 0x9E37_79B9_7F4A_7C15
        var z = rng
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// What a write adds to a byte: never 0, so that every chosen byte changes.
    mutating func newByte() -> UInt8 { zeros ? 1 : UInt8(1 + next() % 255) }

    /// Median microseconds per call of `body` over `batches` batches of `iterations` calls.
    mutating func time(_ body: (inout Int) -> Void) -> Double {
        var perCall: [Double] = []
        var sink = self.sink
        for _ in 0..<batches {
            let start = ContinuousClock.now
            for _ in 0..<iterations { body(&sink) }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            perCall.append(seconds * 1e6 / Double(iterations))
        }
        self.sink = sink
        return perCall.sorted()[perCall.count / 2]
    }

    mutating func twinCopy() -> Double {
        let source = UnsafeRawBufferPointer(page)
        let target = scratch
        page.copyMemory(from: UnsafeRawBufferPointer(twin))
        return time { sink in
            target.copyMemory(from: source)
            sink &+= Int(target[(sink & 4095) % target.count])
        }
    }

    mutating func measure(_ edit: Edit) throws -> Figures {
        page.copyMemory(from: UnsafeRawBufferPointer(twin))
        switch edit {
        case .none:
            break
        case .scattered(let percent):
            // Distinct random positions: a partial Fisher-Yates shuffle.
            var positions = Array(0..<pageSize)
            let changes = pageSize * percent / 100
            for k in 0..<changes {
                let j = k + Int(next() % UInt64(pageSize - k))
                positions.swapAt(k, j)
                page[positions[k]] = twin[positions[k]] &+ newByte()
            }
        case .contiguous(let percent):
            let length = pageSize * percent / 100
            let start = Int(next() % UInt64(pageSize - length + 1))
            for i in start..<start + length { page[i] = twin[i] &+ newByte() }
        }
        let twinView = UnsafeRawBufferPointer(twin)
        let pageView = UnsafeRawBufferPointer(page)
        let diff = PageDiff.make(twin: twinView, page: pageView)
        var result = Figures()
        result.changed = (0..<pageSize).filter { twin[$0] != page[$0] }.count
        result.runs = try diff.runs(pageSize: pageSize).count
        result.raw = Int(diff.rawLength)
        result.compressed = diff.compressed.count
        result.scan = time { sink in
            sink &+= PageDiff.withRunList(twin: twinView, page: pageView) { $0.count }
        }
        result.make = time { sink in
            sink &+= PageDiff.make(twin: twinView, page: pageView).compressed.count
        }
        scratch.copyMemory(from: twinView)
        let target = scratch
        var failure: CodecError?
        result.apply = time { sink in
            do {
                try diff.apply(to: target)
            } catch {
                failure = error as? CodecError
            }
            sink &+= Int(target[(sink & 4095) % target.count])
        }
        if let failure { throw failure }
        guard scratch.elementsEqual(page) else {
            throw ValidationError("internal error: applying the diff did not reproduce the page")
        }
        return result
    }

    static func format(_ micros: Double) -> String { String(format2: micros) }
}

extension String {
    /// `value` with two decimals, without Foundation.
    fileprivate init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        self = "\(hundredths / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
    }

    /// `value` with one decimal, without Foundation.
    fileprivate init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}
