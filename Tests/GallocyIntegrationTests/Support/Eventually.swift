/// Polls `condition` until it holds, at most `timeout`: for waits on a state of the system (a
/// leader, a commit index) where there is no event to wait on. Throws `.timeout` naming `what`, with
/// the last error the condition threw, if any.
func eventually(
    _ what: String, timeout: Duration, interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    var lastError: (any Error)?
    while true {
        do {
            if try await condition() { return }
            lastError = nil
        } catch {
            lastError = error
        }
        if clock.now >= deadline {
            let cause = lastError.map { "; last error: \($0)" } ?? ""
            throw TestSupportError(.timeout, "\(what): not within \(timeout)\(cause)")
        }
        try await Task.sleep(for: interval)
    }
}
