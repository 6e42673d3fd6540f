extension RegisterModel {
    /// Drops operations with an unknown outcome whose effect no other operation could have seen.
    ///
    /// A write, swap or CAS with an unknown outcome installs a value `v`. If nothing else in the
    /// history mentions `v` (no read returned it, no atomic reported it as old, none expected it,
    /// no write wrote it, and it is not the initial value), then any linearization that includes
    /// it stays valid without it: between it and the next write, every operation with a known
    /// outcome would have to report `v`, so only unknown operations can sit there, and those may be
    /// left out too. So the history is linearizable iff it is without that operation.
    ///
    /// This matters: the unknown writes of a faulty run are mostly writes that never happened, and
    /// each one left in doubles the configurations a failing search must visit. Values flow through
    /// `add`, so a history with an add is left as it is. Repeated until nothing more can go, since
    /// dropping one operation can leave another's value unmentioned.
    func simplify<Key>(
        _ operations: [HistoryOperation<Key, RegisterCall<Value>, RegisterReturn<Value>>]
    ) -> [HistoryOperation<Key, RegisterCall<Value>, RegisterReturn<Value>>] {
        let hasAdd = operations.contains { if case .add = $0.input { true } else { false } }
        guard !hasAdd else { return operations }
        var kept = operations
        // Bounded: each pass but the last removes at least one operation.
        for _ in 0...operations.count {
            var mentions: [Value: Int] = [initialState: 1]
            for operation in kept {
                for value in Self.values(mentionedBy: operation) { mentions[value, default: 0] += 1 }
            }
            let before = kept.count
            kept.removeAll { operation in
                guard case .unknown = operation.outcome, let installed = Self.installed(by: operation.input) else {
                    return false
                }
                return mentions[installed] == 1
            }
            if kept.count == before { break }
        }
        return kept
    }

    /// The value an operation installs if it takes effect (a CAS: if it succeeds).
    private static func installed(by call: RegisterCall<Value>) -> Value? {
        switch call {
        case .write(let value), .swap(let value): return value
        case .cas(_, let new): return new
        case .read, .add: return nil
        }
    }

    private static func values(
        mentionedBy operation: HistoryOperation<some Any, RegisterCall<Value>, RegisterReturn<Value>>
    ) -> [Value] {
        var values: [Value] = []
        switch operation.input {
        case .read: break
        case .write(let value), .swap(let value), .add(let value): values.append(value)
        case .cas(let expect, let new): values += [expect, new]
        }
        if case .ok(let output) = operation.outcome {
            switch output {
            case .value(let value): values.append(value)
            case .written: break
            case .atomic(_, let old): values.append(old)
            }
        }
        return values
    }
}
