import Testing

/// Dropping unknown operations nobody could have observed: what goes, what stays, that verdicts do
/// not change, and that it keeps failing searches over faulty histories short.
@Suite struct RegisterSimplifyTests {
    typealias Op = RegisterOperation<UInt64>
    typealias Checker = LinearizabilityChecker<RegisterModel<UInt64>>

    /// The same model without the simplification, to compare verdicts against.
    struct Unsimplified: SequentialModel {
        var base: RegisterModel<UInt64>
        var initialState: UInt64 { base.initialState }
        func step(_ state: UInt64, _ input: RegisterCall<UInt64>, _ output: RegisterReturn<UInt64>?) -> UInt64? {
            base.step(state, input, output)
        }
        func describe(_ input: RegisterCall<UInt64>, _ output: RegisterReturn<UInt64>?) -> String {
            base.describe(input, output)
        }
        func describe(_ state: UInt64) -> String { base.describe(state) }
    }

    static let model = RegisterModel<UInt64>(initial: 0)

    static func unknown(_ call: RegisterCall<UInt64>, at invoke: UInt64 = 0) -> Op {
        Op(client: 1, key: 0, input: call, invoke: invoke, response: nil, outcome: .unknown)
    }

    static func ok(_ call: RegisterCall<UInt64>, _ result: RegisterReturn<UInt64>, _ invoke: UInt64, _ response: UInt64)
        -> Op
    {
        Op(client: 2, key: 0, input: call, invoke: invoke, response: response, outcome: .ok(result))
    }

    @Test func unknownWriteOfAnUnseenValueIsDropped() {
        let history = [Self.unknown(.write(5)), Self.ok(.read, .value(0), 10, 20)]
        #expect(Self.model.simplify(history).count == 1)
    }

    @Test func unknownWriteOfASeenValueStays() {
        let history = [Self.unknown(.write(5)), Self.ok(.read, .value(5), 10, 20)]
        #expect(Self.model.simplify(history).count == 2)
        let expected = [Self.unknown(.write(5)), Self.ok(.cas(expect: 5, new: 6), .atomic(ok: false, old: 0), 10, 20)]
        #expect(Self.model.simplify(expected).count == 2)
        let initial = [Self.unknown(.write(0)), Self.ok(.read, .value(3), 10, 20)]
        #expect(Self.model.simplify(initial).count == 2)
    }

    @Test func knownOperationsAlwaysStay() {
        let history = [Self.ok(.write(5), .written, 0, 5), Self.ok(.read, .value(0), 10, 20)]
        #expect(Self.model.simplify(history).count == 2)
    }

    @Test func droppingRepeatsUntilNothingMoreCanGo() {
        // The CAS is the only one to mention 5, and installs 6 which nobody mentions: it goes, and
        // then nothing mentions 5 either.
        let history = [
            Self.unknown(.write(5)), Self.unknown(.cas(expect: 5, new: 6)), Self.ok(.read, .value(0), 10, 20),
        ]
        #expect(Self.model.simplify(history).count == 1)
    }

    @Test func historiesWithAddAreLeftAlone() {
        let history = [Self.unknown(.write(5)), Self.ok(.add(1), .atomic(ok: true, old: 0), 10, 20)]
        #expect(Self.model.simplify(history).count == 2)
    }

    @Test(arguments: 0..<40 as Range<UInt64>)
    func verdictIsTheSameWithAndWithoutIt(seed: UInt64) {
        // Small random histories with many unknown operations, half of them corrupted.
        var random = SplitMix64(seed: seed + 500)
        var history: [Op] = []
        var value: UInt64 = 0
        for index in 0..<14 {
            let point = UInt64(index) * 1_000 + 5_000
            let invoke = point - UInt64.random(in: 0...2_500, using: &random)
            let response = point + UInt64.random(in: 0...2_500, using: &random)
            let roll = Int.random(in: 0..<10, using: &random)
            let small = UInt64.random(in: 0...4, using: &random)
            var operation: Op
            if roll < 4 {
                operation = Op(
                    client: 0, key: 0, input: .read, invoke: invoke, response: response, outcome: .ok(.value(value)))
            } else if roll < 7 {
                value = small
                operation = Op(
                    client: 0, key: 0, input: .write(small), invoke: invoke, response: response, outcome: .ok(.written))
            } else {
                let succeeds = small == value
                let new = UInt64.random(in: 0...4, using: &random)
                operation = Op(
                    client: 0, key: 0, input: .cas(expect: small, new: new), invoke: invoke, response: response,
                    outcome: .ok(.atomic(ok: succeeds, old: value)))
                if succeeds { value = new }
            }
            if operation.input != .read, Int.random(in: 0..<3, using: &random) == 0 {
                operation.outcome = .unknown
                operation.response = nil
            }
            history.append(operation)
            if Int.random(in: 0..<3, using: &random) == 0 {
                history.append(Self.unknown(.write(UInt64.random(in: 0...6, using: &random)), at: invoke))
            }
        }
        if seed % 2 == 1,
            let target = history.indices.filter({ history[$0].input == .read }).randomElement(using: &random)
        {
            history[target].outcome = .ok(.value(UInt64.random(in: 0...6, using: &random)))
        }
        let simplified = Checker(model: Self.model).check(history)
        let plain = LinearizabilityChecker(model: Unsimplified(base: Self.model)).check(history)
        #expect(simplified.isLinearizable == plain.isLinearizable, "seed \(seed)")
        #expect(simplified.isViolation == plain.isViolation, "seed \(seed)")
    }

    @Test func failingSearchOverAFaultyRunStaysShort() {
        // A long history where a fifth of the operations are unknown writes that never happened,
        // and the last read is corrupted: without the simplification this search runs for minutes.
        var random = SplitMix64(seed: 5)
        var history: [Op] = []
        var value: UInt64 = 0
        for index in 0..<600 {
            let point = UInt64(index) * 1_000 + 10_000
            let invoke = point - UInt64.random(in: 0...3_000, using: &random)
            let response = point + UInt64.random(in: 0...3_000, using: &random)
            if Bool.random(using: &random) {
                history.append(
                    Op(
                        client: index % 5, key: 0, input: .read, invoke: invoke, response: response,
                        outcome: .ok(.value(value))))
            } else {
                value = UInt64(index + 1)
                let unknown = Int.random(in: 0..<10, using: &random) < 3
                history.append(
                    Op(
                        client: index % 5, key: 0, input: .write(value), invoke: invoke,
                        response: unknown ? nil : response,
                        outcome: unknown ? .unknown : .ok(.written)))
            }
            if Int.random(in: 0..<10, using: &random) < 2 {
                history.append(Self.unknown(.write(UInt64(1_000_000 + index)), at: invoke))
            }
        }
        let budget = Checker.Budget(maxSteps: 20_000_000, maxDuration: .seconds(30))
        #expect(Checker.checkRegisters(history, initial: 0, budget: budget).verdict.isLinearizable)
        if let last = history.lastIndex(where: { $0.input == .read }) {
            history[last].outcome = .ok(.value(999_999_999))
        }
        #expect(Checker.checkRegisters(history, initial: 0, budget: budget).verdict.isViolation)
    }
}
