#if canImport(Glibc)
    import Glibc
#endif

/// Jepsen's nemesis: injects faults into a cluster on a seeded random schedule while a workload
/// runs, and undoes them all at the end.
///
/// Every `interval` it either injects one fault from `faults` or (with probability `healChance`)
/// repairs everything: restarts the members it killed, resumes the ones it paused, heals every link.
/// It logs each step with the monotonic time, so that a failing history can be read against the
/// faults. A member that ended without being killed is logged and left down: a crash is a finding,
/// not something to paper over.
struct Nemesis: Sendable {
    enum Fault: Sendable, CaseIterable {
        /// SIGKILL one running member.
        case kill
        /// SIGSTOP one running member.
        case pause
        /// Cut the cluster into two random sides (needs a proxied cluster).
        case partition
        /// Cut one member off from all others (needs a proxied cluster).
        case isolate
        /// Add latency on one random link (needs a proxied cluster).
        case delay
    }

    var faults: [Fault] = Fault.allCases
    var interval: Duration = .seconds(1)
    var healChance = 0.3
    /// At most this many members are down (killed or paused) at once; the default keeps a majority
    /// up, so that a correct cluster can still make progress.
    var maximumDown: Int?
    var seed: UInt64 = 1

    init() {}

    /// Runs until `duration` has passed, `steps` steps are done, or the task is cancelled, then
    /// repairs everything. Returns the log of what it did. With a given seed and step count the
    /// schedule is the same on every run (unless members end by themselves).
    func run(on cluster: Cluster, for duration: Duration, steps: Int = .max) async -> [String] {
        var random = SplitMix64(seed: seed)
        var log: [String] = []
        var victims = Victims()
        let start = MonotonicClock.nanoseconds()
        func note(_ text: String) {
            let milliseconds = (MonotonicClock.nanoseconds() - start) / 1_000_000
            log.append("+\(milliseconds) ms: \(text)")
        }
        let deadline = ContinuousClock.now.advanced(by: duration)
        let limit = maximumDown ?? (cluster.ids.count - 1) / 2
        let usable = faults.filter { cluster.options.proxied || ![.partition, .isolate, .delay].contains($0) }
        // Bounded by the deadline and the step count: one step per interval.
        var step = 0
        while ContinuousClock.now < deadline, step < steps, !Task.isCancelled {
            step += 1
            if usable.isEmpty || Double.random(in: 0..<1, using: &random) < healChance {
                note(repair(cluster, &victims))
            } else if let fault = usable.randomElement(using: &random) {
                note(inject(fault, into: cluster, limit: limit, victims: &victims, random: &random))
            }
            for id in cluster.ids where !victims.killed.contains(id) && !victims.crashed.contains(id) {
                if let status = cluster.exitStatus(id) {
                    victims.crashed.insert(id)
                    note("member \(id) ended by itself: \(status)")
                }
            }
            try? await Task.sleep(for: min(interval, max(ContinuousClock.now.duration(to: deadline), .zero)))
        }
        note(repair(cluster, &victims))
        return log
    }

    /// The members this run took down, so that it brings back exactly those.
    private struct Victims {
        var killed: Set<Int> = []
        var paused: Set<Int> = []
        var crashed: Set<Int> = []
    }

    private func inject(
        _ fault: Fault, into cluster: Cluster, limit: Int, victims: inout Victims, random: inout SplitMix64
    ) -> String {
        let ids = cluster.ids
        let live = cluster.liveIDs
        let down = ids.count - live.count
        switch fault {
        case .kill, .pause:
            guard down < limit, let victim = live.randomElement(using: &random) else {
                return "\(fault): skipped, \(down) members already down"
            }
            if fault == .kill {
                cluster.kill(victim)
                victims.killed.insert(victim)
                return "kill -9 member \(victim)"
            }
            cluster.pause(victim)
            victims.paused.insert(victim)
            return "SIGSTOP member \(victim)"
        case .partition:
            let shuffled = ids.shuffled(using: &random)
            let cut = Int.random(in: 1..<max(2, ids.count), using: &random)
            let sides = [Array(shuffled[..<cut]).sorted(), Array(shuffled[cut...]).sorted()]
            cluster.partition(sides)
            return "partition \(sides)"
        case .isolate:
            guard let victim = ids.randomElement(using: &random) else { return "isolate: no members" }
            cluster.isolate(victim)
            return "isolate member \(victim)"
        case .delay:
            let pair = ids.shuffled(using: &random).prefix(2)
            guard pair.count == 2, let a = pair.first, let b = pair.last else { return "delay: too few members" }
            let delay = Duration.milliseconds(Int.random(in: 5...200, using: &random))
            cluster.setDelay(a, b, delay)
            return "delay \(delay) between members \(a) and \(b)"
        }
    }

    /// Restarts the members this run killed, resumes the ones it paused, heals every link.
    private func repair(_ cluster: Cluster, _ victims: inout Victims) -> String {
        var done: [String] = []
        for id in victims.paused.sorted() {
            cluster.resume(id)
            done.append("resume \(id)")
        }
        victims.paused.removeAll()
        for id in victims.killed.sorted() {
            do {
                try cluster.start(id)
                done.append("restart \(id)")
            } catch {
                done.append("restart \(id) failed: \(error)")
            }
        }
        victims.killed.removeAll()
        if cluster.options.proxied { cluster.healAll() }
        return "repair: " + (done + ["heal links"]).joined(separator: ", ")
    }
}
