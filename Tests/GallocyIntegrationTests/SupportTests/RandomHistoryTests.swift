import Testing

/// Histories made from an actual sequential execution, with each operation's interval stretched
/// around its real linearization point: linearizable by construction. Mutating one result in a
/// way no order can explain must then be caught.
@Suite struct RandomHistoryTests {
    typealias Op = RegisterOperation<UInt64>
    typealias Checker = LinearizabilityChecker<RegisterModel<UInt64>>

    /// Generates `count` operations per key on `keys` registers. Operation i is linearized at time
    /// 1000 * i + 1000 and its interval reaches up to `spread` before and after that point, so it
    /// overlaps up to about 2 * spread / 1000 others. A fraction of the writes and atomics get an
    /// unknown outcome (their effect happened), and some unknown writes never happen at all.
    static func generate(
        seed: UInt64, keys: Int, count: Int, clients: Int, spread: UInt64, unknowns: Bool = true
    ) -> [Op] {
        var random = SplitMix64(seed: seed)
        var history: [Op] = []
        var values = [UInt64](repeating: 0, count: keys)
        let model = RegisterModel<UInt64>(initial: 0)
        for index in 0..<(count * keys) {
            let key = index % keys
            let point = UInt64(index) * 1_000 + spread + 1_000
            let invoke = point - UInt64.random(in: 0...spread, using: &random)
            let response = point + UInt64.random(in: 0...spread, using: &random)
            let current = values[key]
            let call: RegisterCall<UInt64>
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4: call = .read
            case 4..<7: call = .write(UInt64.random(in: 1...6, using: &random))
            case 7..<9:
                let expect = Bool.random(using: &random) ? current : UInt64.random(in: 0...6, using: &random)
                call = .cas(expect: expect, new: UInt64.random(in: 1...6, using: &random))
            default: call = Bool.random(using: &random) ? .add(1) : .swap(UInt64.random(in: 1...6, using: &random))
            }
            let result: RegisterReturn<UInt64>
            switch call {
            case .read: result = .value(current)
            case .write: result = .written
            case .cas(let expect, _): result = .atomic(ok: expect == current, old: current)
            case .swap, .add: result = .atomic(ok: true, old: current)
            }
            guard let next = model.step(current, call, result) else { fatalError("generator and model disagree") }
            values[key] = next
            let client = Int.random(in: 0..<clients, using: &random)
            let address = UInt64(0x1000 + 8 * key)
            if unknowns, call != .read, Int.random(in: 0..<10, using: &random) == 0 {
                history.append(
                    Op(client: client, key: address, input: call, invoke: invoke, response: nil, outcome: .unknown))
            } else {
                history.append(
                    Op(
                        client: client, key: address, input: call, invoke: invoke, response: response,
                        outcome: .ok(result)))
            }
            if unknowns, Int.random(in: 0..<25, using: &random) == 0 {
                // A write that timed out and never took effect, with a value nobody else writes.
                history.append(
                    Op(
                        client: client, key: address, input: .write(1_000 + UInt64(index)), invoke: invoke,
                        response: nil, outcome: .unknown))
            }
        }
        history.shuffle(using: &random)
        return history
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func generatedHistoriesAreLinearizable(seed: UInt64) {
        let history = Self.generate(seed: seed, keys: 3, count: 150, clients: 5, spread: 2_500)
        let report = Checker.checkRegisters(history, initial: 0)
        #expect(report.verdict.isLinearizable, "seed \(seed):\n\(report)")
    }

    @Test func longHeavilyOverlappingHistoryIsDecidedWithinBudget() {
        let history = Self.generate(seed: 42, keys: 1, count: 1_000, clients: 8, spread: 4_000)
        let clock = ContinuousClock()
        let start = clock.now
        let report = Checker.checkRegisters(
            history, initial: 0, budget: .init(maxSteps: 5_000_000, maxDuration: .seconds(30)))
        #expect(report.verdict.isLinearizable, "\(report)")
        #expect(clock.now - start < .seconds(30))
    }

    /// Index of the `n`th operation (in time order of invocation) matching `predicate`.
    static func index(in history: [Op], _ n: Int, where predicate: (Op) -> Bool) -> Int? {
        let order = history.indices.sorted { history[$0].invoke < history[$1].invoke }
        return order.filter { predicate(history[$0]) }.dropFirst(n).first
    }

    @Test(arguments: [11, 12, 13] as [UInt64])
    func readOfAValueNeverWrittenIsCaught(seed: UInt64) throws {
        var history = Self.generate(seed: seed, keys: 2, count: 80, clients: 4, spread: 2_500)
        let target = try #require(Self.index(in: history, 20) { $0.input == .read && $0.response != nil })
        history[target].outcome = .ok(.value(999))
        let report = Checker.checkRegisters(history, initial: 0)
        guard case .notLinearizable(let violation) = report.verdict else {
            Issue.record("seed \(seed): mutation not caught:\n\(report)")
            return
        }
        #expect(violation.description.contains("999"), "\(violation)")
    }

    @Test(arguments: [21, 22, 23] as [UInt64])
    func atomicWithImpossibleOldValueIsCaught(seed: UInt64) throws {
        var history = Self.generate(seed: seed, keys: 1, count: 80, clients: 4, spread: 2_500)
        let target = try #require(
            Self.index(in: history, 5) {
                if case .ok(.atomic) = $0.outcome { return true }
                return false
            })
        guard case .ok(.atomic(let ok, _)) = history[target].outcome else { return }
        history[target].outcome = .ok(.atomic(ok: ok, old: 999))
        #expect(Checker.checkRegisters(history, initial: 0).verdict.isViolation, "seed \(seed)")
    }

    @Test func readThatTravelsBackInTimeIsCaught() throws {
        // With no overlap at all the history is sequential, so changing a read to any other value
        // (here: the value before the previous write) is a violation.
        var history = Self.generate(seed: 31, keys: 1, count: 60, clients: 3, spread: 400, unknowns: false)
        let sorted = history.sorted { $0.invoke < $1.invoke }
        var value: UInt64 = 0
        var previous: UInt64 = 0
        var mutated = false
        for operation in sorted {
            if case .ok(.value(let seen)) = operation.outcome, seen != previous, value != previous, !mutated,
                let target = history.firstIndex(where: { $0.invoke == operation.invoke })
            {
                history[target].outcome = .ok(.value(previous))
                mutated = true
            }
            switch operation.input {
            case .write(let new), .swap(let new):
                previous = value
                value = new
            case .cas(let expect, let new) where expect == value:
                previous = value
                value = new
            case .add(let delta):
                previous = value
                value &+= delta
            default: break
            }
        }
        try #require(mutated)
        #expect(Checker.checkRegisters(history, initial: 0).verdict.isViolation)
    }
}
