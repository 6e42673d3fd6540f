/// A Wing–Gong linearizability checker with the improvements of Lowe ("Testing for
/// linearizability", 2017) and Porcupine: a doubly linked list of call and return entries in time
/// order, "just-in-time" linearization (an operation is tried only when its call is reachable
/// before the first pending return), and memoization of (linearized set, model state) so that a
/// configuration is explored once.
///
/// Operations with an unknown outcome have their return at +infinity: they may be linearized at any
/// point after their call, or never. The search succeeds as soon as every operation with a known
/// outcome is linearized. Failed operations (which definitely did not happen) and unknown reads
/// (which cannot constrain anything) are dropped before the search, and so is whatever the model's
/// `simplify` proves irrelevant (for registers: unknown writes whose value nobody saw).
///
/// The search is exponential in the worst case, so it runs under a `Budget`; running out gives
/// `.unknown`, never a false verdict.
struct LinearizabilityChecker<Model: SequentialModel> {
    /// How much work one key's search may do.
    struct Budget: Sendable {
        /// Steps of the search loop (each tries or undoes one operation).
        var maxSteps: Int
        /// Wall-clock time for one key.
        var maxDuration: Duration

        init(maxSteps: Int = 20_000_000, maxDuration: Duration = .seconds(60)) {
            self.maxSteps = maxSteps
            self.maxDuration = maxDuration
        }
    }

    var model: Model
    var budget: Budget

    init(model: Model, budget: Budget = Budget()) {
        self.model = model
        self.budget = budget
    }

    /// Checks the history of one key (every operation is assumed to act on the same object).
    func check<Key>(
        _ operations: [HistoryOperation<Key, Model.Input, Model.Output>], keyDescription: String = "-"
    ) -> LinearizabilityVerdict {
        var search = Search(model: model, budget: budget, keyDescription: keyDescription)
        return search.run(model.simplify(operations))
    }
}

extension LinearizabilityChecker {
    /// The state of one search; a struct so that `check` stays free of shared mutable state.
    fileprivate struct Search {
        let model: Model
        let budget: Budget
        let keyDescription: String

        // The operations that take part, indexed 0..<n.
        var inputs: [Model.Input] = []
        var outputs: [Model.Output?] = []
        var invokes: [UInt64] = []
        var responses: [UInt64] = []  // UInt64.max for unknown outcomes
        var clients: [Int] = []

        // The entry list: entry 2*i is the call of operation i, 2*i+1 its return; `head` is a
        // sentinel before the first entry. -1 means none.
        var next: [Int] = []
        var prev: [Int] = []
        var head = 0

        init(model: Model, budget: Budget, keyDescription: String) {
            self.model = model
            self.budget = budget
            self.keyDescription = keyDescription
        }

        mutating func run<Key>(_ history: [HistoryOperation<Key, Model.Input, Model.Output>]) -> LinearizabilityVerdict
        {
            for operation in history {
                switch operation.outcome {
                case .failed:
                    continue
                case .unknown:
                    // An unknown read has no effect and no result to explain.
                    if isPureRead(operation.input) { continue }
                    append(operation, output: nil, response: .max)
                case .ok(let output):
                    guard let response = operation.response else {
                        return .unknown(
                            reason:
                                "malformed history: an ok operation of client \(operation.client) has no response time")
                    }
                    guard response >= operation.invoke else {
                        return .unknown(
                            reason:
                                "malformed history: an operation of client \(operation.client) responds before its invocation"
                        )
                    }
                    append(operation, output: output, response: response)
                }
            }
            buildList()
            return search()
        }

        /// Whether an input can never change any state; only such unknown operations are dropped.
        /// Inputs that do not say (`PureReadRecognizable`) are kept, which is always sound.
        private func isPureRead(_ input: Model.Input) -> Bool {
            if let describable = input as? any PureReadRecognizable { return describable.isPureRead }
            return false
        }

        private mutating func append<Key>(
            _ operation: HistoryOperation<Key, Model.Input, Model.Output>, output: Model.Output?, response: UInt64
        ) {
            inputs.append(operation.input)
            outputs.append(output)
            invokes.append(operation.invoke)
            responses.append(response)
            clients.append(operation.client)
        }

        private mutating func buildList() {
            let count = inputs.count
            // Entries in time order; at equal times calls come first, which treats operations that
            // touch at one instant as concurrent (the permissive reading).
            var order = Array(0..<(2 * count))
            func time(_ entry: Int) -> UInt64 { entry % 2 == 0 ? invokes[entry / 2] : responses[entry / 2] }
            order.sort { a, b in
                let ta = time(a)
                let tb = time(b)
                if ta != tb { return ta < tb }
                if a % 2 != b % 2 { return a % 2 == 0 }
                return a < b
            }
            head = 2 * count
            next = Array(repeating: -1, count: 2 * count + 1)
            prev = Array(repeating: -1, count: 2 * count + 1)
            var last = head
            for entry in order {
                next[last] = entry
                prev[entry] = last
                last = entry
            }
        }

        private mutating func lift(_ call: Int) {
            for entry in [call, call + 1] {
                next[prev[entry]] = next[entry]
                if next[entry] != -1 { prev[next[entry]] = prev[entry] }
            }
        }

        private mutating func unlift(_ call: Int) {
            for entry in [call + 1, call] {
                next[prev[entry]] = entry
                if next[entry] != -1 { prev[next[entry]] = entry }
            }
        }

        private struct Configuration: Hashable {
            var linearized: [UInt64]
            var state: Model.State
        }

        private mutating func search() -> LinearizabilityVerdict {
            let count = inputs.count
            var linearized = [UInt64](repeating: 0, count: (count + 63) / 64)
            var state = model.initialState
            var stack: [(call: Int, state: Model.State)] = []
            var seen = Set<Configuration>()
            var best: (prefix: [Int], state: Model.State, blocked: Int?) = ([], state, nil)
            var steps = 0
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: budget.maxDuration)

            var entry = next[head]
            while entry != -1 {
                steps += 1
                if steps > budget.maxSteps {
                    return .unknown(
                        reason: "key \(keyDescription): search exceeded \(budget.maxSteps) steps (\(count) operations)")
                }
                if steps & 0xFFF == 0, clock.now > deadline {
                    return .unknown(
                        reason: "key \(keyDescription): search exceeded \(budget.maxDuration) (\(count) operations)")
                }
                let operation = entry / 2
                if entry % 2 == 0 {
                    if let newState = model.step(state, inputs[operation], outputs[operation]) {
                        var newLinearized = linearized
                        newLinearized[operation / 64] |= 1 << UInt64(operation % 64)
                        if seen.insert(Configuration(linearized: newLinearized, state: newState)).inserted {
                            stack.append((entry, state))
                            state = newState
                            linearized = newLinearized
                            lift(entry)
                            if stack.count > best.prefix.count {
                                best = (stack.map { $0.call / 2 }, state, nil)
                            }
                            entry = next[head]
                            continue
                        }
                    }
                    entry = next[entry]
                } else {
                    // A pending return: its operation must be linearized before anything after it.
                    // Unknown returns sit at +infinity behind every known one, so reaching one means
                    // every operation with a known outcome is linearized.
                    if outputs[operation] == nil && responses[operation] == .max { return .linearizable }
                    if stack.count == best.prefix.count, best.blocked == nil { best.blocked = operation }
                    guard let (call, previous) = stack.popLast() else {
                        return .notLinearizable(violation(best: best))
                    }
                    state = previous
                    linearized[(call / 2) / 64] &= ~(1 << UInt64((call / 2) % 64))
                    unlift(call)
                    entry = next[call]
                }
            }
            return .linearizable
        }

        private func violation(best: (prefix: [Int], state: Model.State, blocked: Int?)) -> LinearizabilityViolation {
            let origin = invokes.min() ?? 0
            func describe(_ operation: Int) -> String {
                let invoke = Self.format(invokes[operation] - origin)
                let response = responses[operation] == .max ? "∞" : Self.format(responses[operation] - origin)
                return "client \(clients[operation]) [\(invoke), \(response)] "
                    + model.describe(inputs[operation], outputs[operation])
            }
            var candidates: [String] = []
            if let blocked = best.blocked {
                let placed = Set(best.prefix)
                candidates = (0..<inputs.count)
                    .filter { !placed.contains($0) && $0 != blocked && invokes[$0] <= responses[blocked] }
                    .sorted { invokes[$0] < invokes[$1] }
                    .prefix(20)
                    .map(describe)
            }
            return LinearizabilityViolation(
                key: keyDescription,
                longestPrefix: best.prefix.map(describe),
                stateAfterPrefix: model.describe(best.state),
                blocked: best.blocked.map(describe),
                candidates: candidates,
                operationCount: inputs.count
            )
        }

        /// Times relative to the history's first invocation, in microseconds with one decimal, so
        /// that reports stay readable for real and synthetic histories alike.
        private static func format(_ nanoseconds: UInt64) -> String {
            let tenths = nanoseconds / 100
            return "\(tenths / 10).\(tenths % 10)µs"
        }
    }
}

/// Inputs that can tell whether they never change state, so that the checker can drop them when
/// their outcome is unknown.
protocol PureReadRecognizable {
    var isPureRead: Bool { get }
}

extension RegisterCall: PureReadRecognizable {
    var isPureRead: Bool {
        if case .read = self { return true }
        return false
    }
}
