extension Cluster {
    /// What one poll of the members' status found.
    struct StatusPoll: Sendable, CustomStringConvertible {
        var statuses: [Int: NodeStatus]
        var errors: [Int: String]

        var description: String {
            let answered = statuses.sorted { $0.key < $1.key }.map { id, status -> String in
                "member \(id): \(status.role), term \(status.term), leader \(status.leader.map(String.init) ?? "none"), commit \(status.commitIndex)"
            }
            let failed = errors.sorted { $0.key < $1.key }.map { "member \($0.key): \($0.value)" }
            return (answered + failed).joined(separator: "; ")
        }
    }

    /// Asks every member in `ids` for `/v1/status` at once.
    func pollStatus(_ ids: [Int], timeout: Duration = .seconds(2)) async -> StatusPoll {
        await withTaskGroup(of: (Int, Result<NodeStatus, any Error>).self) { group in
            for id in ids {
                let client = client(id, timeout: timeout)
                group.addTask {
                    do { return (id, .success(try await client.status())) } catch { return (id, .failure(error)) }
                }
            }
            var poll = StatusPoll(statuses: [:], errors: [:])
            for await (id, result) in group {
                switch result {
                case .success(let status): poll.statuses[id] = status
                case .failure(let error): poll.errors[id] = "\(error)"
                }
            }
            return poll
        }
    }

    /// Waits until every member of `among` (default: every live one) answers `/v1/status`, all name
    /// the same leader, and that leader is one of them and says it is leader. Returns its id.
    @discardableResult
    func waitForLeader(among: [Int]? = nil, timeout: Duration = .seconds(20)) async throws -> Int {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last = StatusPoll(statuses: [:], errors: [:])
        while clock.now < deadline {
            let members = among ?? liveIDs
            last = await pollStatus(members)
            if !members.isEmpty, last.errors.isEmpty, last.statuses.count == members.count {
                let leaders = Set(last.statuses.values.map(\.leader))
                if leaders.count == 1, let only = leaders.first, let leader = only,
                    let status = last.statuses[leader], status.isLeader
                {
                    return leader
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let down = ids.filter { !liveIDs.contains($0) }.map { id in
            "member \(id) not live (\(exitStatus(id).map { "\($0)" } ?? (isRunning(id) ? "paused" : "not started")))"
        }
        let seen = ([last.description] + down).filter { !$0.isEmpty }.joined(separator: "; ")
        throw TestSupportError(.timeout, "no agreed leader within \(timeout): \(seen)")
    }
}
