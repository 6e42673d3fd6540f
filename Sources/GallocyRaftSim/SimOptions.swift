import GallocyRaft

/// What a simulated run does: cluster shape, network faults, crash and client rates. Rates are
/// per step (one step = one tick of every member's clock).
public struct SimOptions: Sendable {
    public var seed: UInt64
    public var members: Int
    public var steps: Int
    /// Probability that a message is lost / delivered twice.
    public var dropRate: Double
    public var duplicateRate: Double
    /// Messages take 0...maxDelay ticks, so they are reordered.
    public var maxDelay: Int
    /// Per step: probability to cut the network in two random halves, and to heal it.
    public var partitionRate: Double
    public var healRate: Double
    /// Per step: probability to crash a running member, and to restart a crashed one.
    public var crashRate: Double
    public var restartRate: Double
    /// Never crash more than this many members at once.
    public var maxCrashed: Int
    /// Per step: probability that a client proposes / reads.
    public var proposeRate: Double
    public var readRate: Double
    /// Probability that a member's durable write completes only at a later step (a crash in
    /// between loses it).
    public var slowDiskRate: Double
    /// A member snapshots its state machine every `snapshotEvery` applied entries (0: never).
    public var snapshotEvery: Int
    public var snapshotChunkSize: Int
    /// Per step: probability that the leader is asked to transfer leadership.
    public var transferRate: Double
    /// Per step: probability of a membership change (learner added, promoted, or a member removed).
    public var membershipRate: Double
    /// Spare member ids (above `members`) that membership changes may bring in.
    public var spares: Int
    public var electionTick: Int
    public var heartbeatTick: Int
    public var maxSizePerMsg: Int
    public var maxInflightMsgs: Int
    public var maxInflightBytes: Int
    public var preVote: Bool
    public var checkQuorum: Bool
    /// Steps allowed, after the faults stop, for the cluster to converge (liveness check).
    public var settleSteps: Int
    /// Record an event trace (slower; used to replay a failing seed).
    public var trace: Bool
    /// How many trace lines a violation carries.
    public var traceLength = 60

    public init(seed: UInt64, members: Int = 3) {
        self.seed = seed
        self.members = members
        steps = 1000
        dropRate = 0.05
        duplicateRate = 0.02
        maxDelay = 3
        partitionRate = 0.01
        healRate = 0.05
        crashRate = 0.005
        restartRate = 0.05
        maxCrashed = members
        proposeRate = 0.3
        readRate = 0.05
        slowDiskRate = 0.2
        snapshotEvery = 40
        snapshotChunkSize = 64
        transferRate = 0.003
        membershipRate = 0
        spares = 0
        electionTick = 10
        heartbeatTick = 2
        maxSizePerMsg = 1024
        maxInflightMsgs = 8
        maxInflightBytes = 4096
        preVote = true
        checkQuorum = true
        settleSteps = 2000
        trace = false
    }

    /// Options whose fault rates are themselves drawn from the seed: some runs calm, some with a
    /// lossy network, some crashing leaders every few heartbeats, so that many seeds cover
    /// many kinds of trouble.
    public static func varied(seed: UInt64, members: Int) -> SimOptions {
        var o = SimOptions(seed: seed, members: members)
        var rng = SplitMix64(seed: seed ^ 0xA5A5_5A5A_DEAD_BEEF)
        func pick(_ values: [Double]) -> Double { values[Int(rng.next() % UInt64(values.count))] }
        o.dropRate = pick([0, 0.02, 0.1, 0.3])
        o.duplicateRate = pick([0, 0.02, 0.1])
        o.maxDelay = Int(rng.next() % 6)
        o.partitionRate = pick([0, 0.005, 0.02, 0.05])
        o.healRate = pick([0.02, 0.1])
        o.crashRate = pick([0, 0.005, 0.02, 0.08])
        o.restartRate = pick([0.02, 0.1, 0.3])
        o.slowDiskRate = pick([0, 0.2, 0.6])
        o.snapshotEvery = [0, 10, 40, 200][Int(rng.next() % 4)]
        o.snapshotChunkSize = [128, 512, 4096][Int(rng.next() % 3)]
        o.proposeRate = pick([0.1, 0.3, 0.9])
        o.transferRate = pick([0, 0.003, 0.02])
        o.maxInflightMsgs = [1, 4, 64][Int(rng.next() % 3)]
        o.maxSizePerMsg = [256, 1024][Int(rng.next() % 2)]
        return o
    }

    /// A reliable network and no faults: for scenario tests that inject their own.
    public static func quiet(seed: UInt64, members: Int) -> SimOptions {
        var o = SimOptions(seed: seed, members: members)
        o.dropRate = 0
        o.duplicateRate = 0
        o.maxDelay = 0
        o.partitionRate = 0
        o.healRate = 0
        o.crashRate = 0
        o.restartRate = 0
        o.proposeRate = 0
        o.readRate = 0
        o.slowDiskRate = 0
        o.snapshotEvery = 0
        o.transferRate = 0
        return o
    }
}

/// A broken safety (or liveness) property, with what is needed to reproduce it.
public struct SimViolation: Error, Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var step: Int
    public var message: String
    public var trace: [String]

    public var description: String {
        "violation at seed \(seed), step \(step): \(message)"
    }
}
