/// What a client asked a register (one memory word or block) to do.
enum RegisterCall<Value: RegisterValue>: Sendable, Hashable {
    case read
    case write(Value)
    case cas(expect: Value, new: Value)
    case swap(Value)
    case add(Value)
}

/// What a register answered, for an operation that completed.
enum RegisterReturn<Value: RegisterValue>: Sendable, Hashable {
    /// A read's value.
    case value(Value)
    /// A write's acknowledgement.
    case written
    /// An atomic's answer: `ok` (always true for swap and add) and the value before it.
    case atomic(ok: Bool, old: Value)
}

/// The sequential specification of one register: reads see the last write; CAS, swap and add are
/// atomic read-modify-writes.
struct RegisterModel<Value: RegisterValue>: SequentialModel {
    var initialState: Value

    init(initial: Value) { self.initialState = initial }

    func step(_ state: Value, _ input: RegisterCall<Value>, _ output: RegisterReturn<Value>?) -> Value? {
        switch input {
        case .read:
            // A read with an unknown outcome says nothing and leaves the state alone.
            guard let output else { return state }
            return output == .value(state) ? state : nil
        case .write(let value):
            guard let output else { return value }
            return output == .written ? value : nil
        case .cas(let expect, let new):
            // Given the state, the outcome of a CAS is determined; an unknown one takes that outcome.
            let succeeds = state == expect
            guard let output else { return succeeds ? new : state }
            return output == .atomic(ok: succeeds, old: state) ? (succeeds ? new : state) : nil
        case .swap(let value):
            guard let output else { return value }
            return output == .atomic(ok: true, old: state) ? value : nil
        case .add(let delta):
            guard let sum = state.adding(delta) else { return nil }
            guard let output else { return sum }
            return output == .atomic(ok: true, old: state) ? sum : nil
        }
    }

    func describe(_ input: RegisterCall<Value>, _ output: RegisterReturn<Value>?) -> String {
        let call: String
        switch input {
        case .read: call = "read"
        case .write(let value): call = "write(\(value.reportDescription))"
        case .cas(let expect, let new): call = "cas(\(expect.reportDescription)→\(new.reportDescription))"
        case .swap(let value): call = "swap(\(value.reportDescription))"
        case .add(let delta): call = "add(\(delta.reportDescription))"
        }
        guard let output else { return call + " → ?" }
        switch output {
        case .value(let value): return call + " → \(value.reportDescription)"
        case .written: return call + " → ok"
        case .atomic(let ok, let old): return call + " → \(ok ? "ok" : "fail"), old \(old.reportDescription)"
        }
    }

    func describe(_ state: Value) -> String { state.reportDescription }
}
