/// The verdicts of a history checked key by key.
struct LinearizabilityReport: Sendable, CustomStringConvertible {
    /// One verdict per key, in key order of first appearance.
    var verdicts: [(key: String, verdict: LinearizabilityVerdict)]

    /// Linearizable only if every key is; a violation anywhere outweighs an unknown elsewhere.
    var verdict: LinearizabilityVerdict {
        if let violation = verdicts.first(where: { $0.verdict.isViolation }) { return violation.verdict }
        if let unknown = verdicts.first(where: { $0.verdict.isUnknown }) { return unknown.verdict }
        return .linearizable
    }

    var description: String {
        verdicts.map { entry in
            switch entry.verdict {
            case .linearizable: return "key \(entry.key): linearizable"
            case .unknown(let reason): return "key \(entry.key): unknown: \(reason)"
            case .notLinearizable(let violation): return violation.description
            }
        }.joined(separator: "\n")
    }
}

extension LinearizabilityChecker {
    /// Checks a history whose keys are independent objects, one key at a time. For independent
    /// registers this is exact: a history is linearizable iff each key's sub-history is
    /// (linearizability is local, Herlihy & Wing 1990).
    ///
    /// - Parameter model: the model of one key, e.g. a register whose initial value depends on it.
    static func checkPartitioned<Key>(
        _ history: [HistoryOperation<Key, Model.Input, Model.Output>],
        budget: Budget = Budget(),
        describeKey: (Key) -> String = { "\($0)" },
        model: (Key) -> Model
    ) -> LinearizabilityReport {
        var order: [Key] = []
        var byKey: [Key: [HistoryOperation<Key, Model.Input, Model.Output>]] = [:]
        for operation in history {
            if byKey[operation.key] == nil { order.append(operation.key) }
            byKey[operation.key, default: []].append(operation)
        }
        let verdicts = order.map { key in
            let checker = LinearizabilityChecker(model: model(key), budget: budget)
            return (key: describeKey(key), verdict: checker.check(byKey[key] ?? [], keyDescription: describeKey(key)))
        }
        return LinearizabilityReport(verdicts: verdicts)
    }
}

extension LinearizabilityChecker {
    /// Checks a history of memory operations on heap addresses, each address a register that
    /// starts as `initial` (zero for freshly allocated memory).
    static func checkRegisters<Value>(
        _ history: [RegisterOperation<Value>], initial: Value, budget: Budget = Budget()
    ) -> LinearizabilityReport where Model == RegisterModel<Value> {
        checkPartitioned(
            history, budget: budget, describeKey: { "0x" + String($0, radix: 16) },
            model: { _ in RegisterModel(initial: initial) })
    }
}
