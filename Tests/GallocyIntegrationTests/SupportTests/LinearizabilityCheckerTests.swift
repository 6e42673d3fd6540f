import Testing

/// Tests of the checker on synthetic histories whose verdict is known by construction.
@Suite struct LinearizabilityCheckerTests {
    typealias Op = RegisterOperation<UInt64>
    typealias Checker = LinearizabilityChecker<RegisterModel<UInt64>>

    static let address: UInt64 = 0x10

    /// An operation with a known outcome on `key`, between `invoke` and `response`.
    static func ok(
        _ client: Int, _ invoke: UInt64, _ response: UInt64, _ call: RegisterCall<UInt64>,
        _ result: RegisterReturn<UInt64>, key: UInt64 = address
    ) -> Op {
        Op(client: client, key: key, input: call, invoke: invoke, response: response, outcome: .ok(result))
    }

    static func unknown(_ client: Int, _ invoke: UInt64, _ call: RegisterCall<UInt64>, key: UInt64 = address) -> Op {
        Op(client: client, key: key, input: call, invoke: invoke, response: nil, outcome: .unknown)
    }

    static func failed(_ client: Int, _ invoke: UInt64, _ response: UInt64, _ call: RegisterCall<UInt64>) -> Op {
        Op(client: client, key: address, input: call, invoke: invoke, response: response, outcome: .failed)
    }

    static func check(_ history: [Op]) -> LinearizabilityVerdict {
        Checker.checkRegisters(history, initial: 0).verdict
    }

    @Test func sequentialHistoryIsLinearizable() {
        let history = [
            Self.ok(1, 0, 10, .write(1), .written),
            Self.ok(2, 20, 30, .read, .value(1)),
            Self.ok(1, 40, 50, .cas(expect: 1, new: 2), .atomic(ok: true, old: 1)),
            Self.ok(2, 60, 70, .cas(expect: 1, new: 3), .atomic(ok: false, old: 2)),
            Self.ok(3, 80, 90, .add(5), .atomic(ok: true, old: 2)),
            Self.ok(3, 100, 110, .swap(9), .atomic(ok: true, old: 7)),
            Self.ok(1, 120, 130, .read, .value(9)),
        ]
        #expect(Self.check(history).isLinearizable)
    }

    @Test func emptyHistoryIsLinearizable() {
        #expect(Self.check([]).isLinearizable)
    }

    @Test func overlappingWritesWithOrderableReadsAreLinearizable() {
        // w1 and w2 overlap; the reads force the order w1, read 1, w2, read 2.
        let history = [
            Self.ok(1, 0, 100, .write(1), .written),
            Self.ok(2, 10, 90, .write(2), .written),
            Self.ok(3, 50, 60, .read, .value(1)),
            Self.ok(3, 95, 99, .read, .value(2)),
            Self.ok(4, 20, 120, .read, .value(0)),
        ]
        #expect(Self.check(history).isLinearizable)
    }

    @Test func staleReadAfterCompletedWriteIsRejected() throws {
        let history = [
            Self.ok(1, 0, 10, .write(1), .written),
            Self.ok(1, 20, 30, .write(2), .written),
            Self.ok(2, 40, 50, .read, .value(1)),
        ]
        let verdict = Self.check(history)
        guard case .notLinearizable(let violation) = verdict else {
            Issue.record("expected a violation, got \(verdict)")
            return
        }
        #expect(violation.key == "0x10")
        #expect(violation.longestPrefix.count == 2)
        #expect(violation.stateAfterPrefix == "2")
        #expect(violation.blocked?.contains("read → 1") == true)
        #expect(violation.description.contains("could not place"))
    }

    @Test func twoSuccessfulCASFromTheSameValueAreRejected() {
        let history = [
            Self.ok(1, 0, 100, .cas(expect: 0, new: 1), .atomic(ok: true, old: 0)),
            Self.ok(2, 10, 90, .cas(expect: 0, new: 2), .atomic(ok: true, old: 0)),
        ]
        #expect(Self.check(history).isViolation)
    }

    @Test func lostCASIsRejected() {
        // The CAS was acknowledged, yet a read that began after it sees the old value.
        let history = [
            Self.ok(1, 0, 10, .cas(expect: 0, new: 5), .atomic(ok: true, old: 0)),
            Self.ok(2, 20, 30, .read, .value(0)),
        ]
        #expect(Self.check(history).isViolation)
    }

    @Test func unknownWriteMayTakeEffect() {
        let history = [
            Self.unknown(1, 0, .write(1)),
            Self.ok(2, 10, 20, .read, .value(0)),
            Self.ok(2, 30, 40, .read, .value(1)),
        ]
        #expect(Self.check(history).isLinearizable)
    }

    @Test func unknownWriteMayNeverTakeEffect() {
        let history = [
            Self.unknown(1, 0, .write(1)),
            Self.ok(2, 10, 20, .read, .value(0)),
            Self.ok(2, 1_000, 1_010, .read, .value(0)),
        ]
        #expect(Self.check(history).isLinearizable)
    }

    @Test func unknownWriteTakesEffectOnceAtMost() {
        // Once the unknown write is visible it cannot disappear again.
        let history = [
            Self.unknown(1, 0, .write(1)),
            Self.ok(2, 10, 20, .read, .value(1)),
            Self.ok(2, 30, 40, .read, .value(0)),
        ]
        #expect(Self.check(history).isViolation)
    }

    @Test func unknownWriteCannotTakeEffectBeforeItsInvocation() {
        let history = [
            Self.ok(2, 0, 10, .read, .value(1)),
            Self.unknown(1, 20, .write(1)),
        ]
        #expect(Self.check(history).isViolation)
    }

    @Test func unknownCASTakesTheOutcomeTheStateDictates() {
        let took = [
            Self.unknown(1, 0, .cas(expect: 0, new: 7)),
            Self.ok(2, 10, 20, .read, .value(7)),
        ]
        let didNot = [
            Self.unknown(1, 0, .cas(expect: 0, new: 7)),
            Self.ok(2, 10, 20, .read, .value(0)),
        ]
        // The CAS expects 3 but the register holds 0: it cannot have installed 7.
        let impossible = [
            Self.unknown(1, 0, .cas(expect: 3, new: 7)),
            Self.ok(2, 10, 20, .read, .value(7)),
        ]
        #expect(Self.check(took).isLinearizable)
        #expect(Self.check(didNot).isLinearizable)
        #expect(Self.check(impossible).isViolation)
    }

    @Test func failedOperationsNeverTakeEffect() {
        let seen = [Self.failed(1, 0, 10, .write(1)), Self.ok(2, 5, 30, .read, .value(1))]
        let unseen = [Self.failed(1, 0, 10, .write(1)), Self.ok(2, 5, 30, .read, .value(0))]
        #expect(Self.check(seen).isViolation)
        #expect(Self.check(unseen).isLinearizable)
    }

    @Test func unknownReadsAreIgnored() {
        let history = [
            Self.ok(1, 0, 10, .write(1), .written),
            Self.unknown(2, 20, .read),
            Self.ok(3, 30, 40, .read, .value(1)),
        ]
        #expect(Self.check(history).isLinearizable)
    }

    @Test func keysAreCheckedIndependently() {
        // A violation on one key is reported for that key alone.
        let history = [
            Self.ok(1, 0, 10, .write(1), .written, key: 0x10),
            Self.ok(2, 0, 10, .write(1), .written, key: 0x18),
            Self.ok(3, 20, 30, .read, .value(1), key: 0x10),
            Self.ok(3, 40, 50, .read, .value(1), key: 0x18),
            Self.ok(4, 60, 70, .read, .value(2), key: 0x18),
        ]
        let report = Checker.checkRegisters(history, initial: 0)
        #expect(report.verdicts.count == 2)
        #expect(report.verdicts[0].verdict.isLinearizable)
        #expect(report.verdicts[1].verdict.isViolation)
        #expect(report.verdicts[1].key == "0x18")
        #expect(report.verdict.isViolation)
        #expect(report.description.contains("key 0x10: linearizable"))
    }

    @Test func malformedHistoryIsUnknownNotAVerdict() {
        let history = [Op(client: 1, key: 0x10, input: .read, invoke: 10, response: nil, outcome: .ok(.value(0)))]
        #expect(Self.check(history).isUnknown)
    }

    @Test func exhaustedBudgetGivesUnknown() {
        // Many overlapping writes and a read nobody wrote: the search must try many orders.
        var history = (0..<12).map { Self.ok($0, 0, 1_000, .write(UInt64($0 + 1)), .written) }
        history.append(Self.ok(99, 0, 1_000, .read, .value(77)))
        let budget = Checker.Budget(maxSteps: 50, maxDuration: .seconds(10))
        let report = Checker.checkRegisters(history, initial: 0, budget: budget)
        #expect(report.verdict.isUnknown)
        // Without the bound the same history is decided, and is a violation.
        #expect(Self.check(history).isViolation)
    }

    @Test func byteBlocksAreRegistersToo() {
        typealias BlockOp = RegisterOperation<ByteBlock>
        let a = ByteBlock([1, 2, 3, 4])
        let b = ByteBlock([5, 6, 7, 8])
        let good: [BlockOp] = [
            BlockOp(client: 1, key: 0x1000, input: .write(a), invoke: 0, response: 10, outcome: .ok(.written)),
            BlockOp(client: 2, key: 0x1000, input: .write(b), invoke: 5, response: 30, outcome: .ok(.written)),
            BlockOp(client: 3, key: 0x1000, input: .read, invoke: 12, response: 20, outcome: .ok(.value(a))),
            BlockOp(client: 3, key: 0x1000, input: .read, invoke: 40, response: 50, outcome: .ok(.value(b))),
        ]
        var torn = good
        torn[3].outcome = .ok(.value(ByteBlock([5, 6, 3, 4])))
        let check = { (history: [BlockOp]) in
            LinearizabilityChecker<RegisterModel<ByteBlock>>.checkRegisters(history, initial: .zeros(4)).verdict
        }
        #expect(check(good).isLinearizable)
        #expect(check(torn).isViolation)
    }
}
