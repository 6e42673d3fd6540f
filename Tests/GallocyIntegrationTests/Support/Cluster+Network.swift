extension Cluster {
    /// The proxy that carries what `from` dials to `to`; nil in an unproxied cluster. For a member
    /// added later, what old members dial to it goes through its shared inbound proxy.
    func proxy(from: Int, to: Int) -> TestProxy? {
        withProxyTables { proxies, inbound in proxies[Link(from: from, to: to)] ?? inbound[to] }
    }

    /// The proxies that carry traffic between `a` and `b`, either direction. A member added with
    /// `addJoiningMember` is reached by all old members through one shared proxy, which is cut only
    /// by `isolate`.
    private func proxies(between a: Int, and b: Int) -> [TestProxy] {
        withProxyTables { proxies, _ in
            [proxies[Link(from: a, to: b)], proxies[Link(from: b, to: a)]].compactMap { $0 }
        }
    }

    /// Cuts the link between `a` and `b` both ways: open connections are reset, new ones refused
    /// (or blackholed).
    func cut(_ a: Int, _ b: Int, mode: TestProxy.CutMode = .refuse) {
        precondition(options.proxied, "cutting links needs a proxied cluster")
        for proxy in proxies(between: a, and: b) { proxy.cut(mode) }
    }

    func heal(_ a: Int, _ b: Int) {
        for proxy in proxies(between: a, and: b) { proxy.heal() }
    }

    /// Cuts `id` off from every other member.
    func isolate(_ id: Int, mode: TestProxy.CutMode = .refuse) {
        for other in ids where other != id { cut(id, other, mode: mode) }
        withProxyTables { _, inbound in inbound[id] }?.cut(mode)
    }

    /// Cuts every link between members of different groups; members in no group are cut from all.
    func partition(_ groups: [[Int]], mode: TestProxy.CutMode = .refuse) {
        let group = Dictionary(
            uniqueKeysWithValues: groups.enumerated().flatMap { index, members in members.map { ($0, index) } })
        for a in ids {
            for b in ids where a < b {
                if let ga = group[a], let gb = group[b], ga == gb {
                    heal(a, b)
                } else {
                    cut(a, b, mode: mode)
                }
            }
        }
    }

    /// Heals every link and removes every delay.
    func healAll() {
        let all = withProxyTables { proxies, inbound in Array(proxies.values) + Array(inbound.values) }
        for proxy in all {
            proxy.heal()
            proxy.setDelay(.zero)
            proxy.setResetProbability(0)
        }
    }

    /// Adds `delay` per chunk on the link between `a` and `b`, both ways.
    func setDelay(_ a: Int, _ b: Int, _ delay: Duration) {
        for proxy in proxies(between: a, and: b) { proxy.setDelay(delay) }
    }

    /// The probability per chunk that the link between `a` and `b` resets its connection.
    func setResetProbability(_ a: Int, _ b: Int, _ probability: Double) {
        for proxy in proxies(between: a, and: b) { proxy.setResetProbability(probability) }
    }
}
