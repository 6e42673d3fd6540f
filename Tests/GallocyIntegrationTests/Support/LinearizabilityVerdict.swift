/// The answer of the linearizability checker for one key, or for a whole history.
enum LinearizabilityVerdict: Sendable {
    case linearizable
    case notLinearizable(LinearizabilityViolation)
    /// The search ran out of its budget (or the history was malformed): nothing is proven.
    case unknown(reason: String)

    var isLinearizable: Bool {
        if case .linearizable = self { return true }
        return false
    }

    var isViolation: Bool {
        if case .notLinearizable = self { return true }
        return false
    }

    var isUnknown: Bool {
        if case .unknown = self { return true }
        return false
    }
}

/// Why a key's history is not linearizable, in terms a person can check by hand: the longest
/// prefix of operations the search could linearize, the state it reached, and the operation that
/// had to complete next but could not be placed.
struct LinearizabilityViolation: Sendable, CustomStringConvertible {
    /// The key whose history fails.
    var key: String
    /// The longest linearization found, in linearization order.
    var longestPrefix: [String]
    /// The model state after that prefix.
    var stateAfterPrefix: String
    /// The operation whose response forced backtracking at that depth: it completed before any
    /// order of the remaining operations could explain it.
    var blocked: String?
    /// Operations not in the prefix that were invoked before `blocked` responded: the candidates the
    /// search tried to place next.
    var candidates: [String]
    /// How many operations the key's history has, after dropping failed ones and unknown reads.
    var operationCount: Int

    var description: String {
        var lines = ["key \(key): not linearizable (\(operationCount) operations)"]
        lines.append("  longest linearizable prefix (\(longestPrefix.count)):")
        lines += longestPrefix.map { "    " + $0 }
        lines.append("  state after it: \(stateAfterPrefix)")
        if let blocked { lines.append("  could not place: \(blocked)") }
        if !candidates.isEmpty {
            lines.append("  candidates tried next:")
            lines += candidates.map { "    " + $0 }
        }
        return lines.joined(separator: "\n")
    }
}
