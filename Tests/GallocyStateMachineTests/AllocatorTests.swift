import GallocyCodec
import Testing

@testable import GallocyStateMachine

@Suite struct AllocatorTests {
    @Test func blocksAreEightAlignedAndPageAlignedFromAPageUp() throws {
        let replica = try Replica()
        let small = try replica.allocate(3)
        let next = try replica.allocate(5)
        #expect(small % 8 == 0 && next == small + 8)
        let big = try replica.allocate(4096)
        #expect(big % 4096 == 0 && big == testSettings.heapBase + 4096)
        // The rest of page 0 is still free and first fit goes back to it.
        let filler = try replica.allocate(24)
        #expect(filler == next + 8)
        try checkAllocatorInvariants(replica.table)
    }

    @Test func freedSpaceIsReusedFirstFitByAddress() throws {
        let replica = try Replica()
        let a = try replica.allocate(64)
        let b = try replica.allocate(64)
        let c = try replica.allocate(64)
        try replica.apply(.free(address: b))
        #expect(try replica.allocate(32) == b)
        #expect(try replica.allocate(32) == b + 32)
        #expect(try replica.allocate(8) == c + 64)
        try replica.apply(.free(address: a))
        try replica.apply(.free(address: c))
        try checkAllocatorInvariants(replica.table)
    }

    @Test func freeCoalescesWithBothNeighbours() throws {
        let replica = try Replica()
        let blocks = try (0..<4).map { _ in try replica.allocate(4096) }
        try replica.apply(.free(address: blocks[0]))
        try replica.apply(.free(address: blocks[2]))
        try replica.apply(.free(address: blocks[1]))
        let free = try replica.table.freeRanges()
        #expect(free.count == 2)
        #expect(free[0].address == blocks[0] && free[0].size == 3 * 4096)
        // Three pages are free in one piece again.
        #expect(try replica.allocate(3 * 4096) == blocks[0])
        try checkAllocatorInvariants(replica.table)
    }

    @Test func zeroSizeAndExhaustionAreRejectedResults() throws {
        let replica = try Replica()
        #expect(try replica.apply(.alloc(size: 0, member: 1)).rejection?.code == .zeroSize)
        #expect(try replica.apply(.alloc(size: (1 << 20) + 1, member: 1)).rejection?.code == .outOfSpace)
        #expect(try replica.apply(.alloc(size: UInt64.max, member: 1)).rejection?.code == .outOfSpace)
        let whole = try replica.allocate(1 << 20)
        #expect(whole == testSettings.heapBase)
        let before = try replica.table.canonicalDump()
        #expect(try replica.apply(.alloc(size: 8, member: 1)).rejection?.code == .outOfSpace)
        #expect(try replica.table.canonicalDump().replacingProgress() == before.replacingProgress())
        try replica.apply(.free(address: whole))
        #expect(try replica.allocate(8) == testSettings.heapBase)
    }

    @Test func aPageAlignedBlockSkipsAnUnalignedGapAndLeavesItFree() throws {
        let replica = try Replica()
        let small = try replica.allocate(40)
        let big = try replica.allocate(8192)
        #expect(big == testSettings.heapBase + 4096)
        let free = try replica.table.freeRanges()
        #expect(free.first?.address == small + 40 && free.first?.size == 4096 - 40)
        try checkAllocatorInvariants(replica.table)
    }

    @Test func fragmentedFreeSpaceRefusesALargeBlockButTakesSmallOnes() throws {
        let replica = try Replica(settings: ClusterSettings(clusterID: 1, heapBase: 0x10_0000, heapSize: 8 * 4096, pageSize: 4096))
        let blocks = try (0..<8).map { _ in try replica.allocate(4096) }
        for block in blocks.enumerated() where block.offset % 2 == 0 {
            try replica.apply(.free(address: block.element))
        }
        // Four pages are free, but no two of them are adjacent.
        #expect(try replica.apply(.alloc(size: 2 * 4096, member: 1)).rejection?.code == .outOfSpace)
        #expect(try replica.allocate(4096) == blocks[0])
        #expect(try replica.allocate(100) == blocks[2])
        try checkAllocatorInvariants(replica.table)
    }

    @Test func aSnapshotTakenMidwayAndReplayedOnGivesTheSameTable() throws {
        let commands = randomCommands(seed: 31, count: 400)
        let straight = try Replica()
        let first = try Replica()
        for command in commands { try straight.apply(command.body, client: command.client) }
        for command in commands.prefix(200) { try first.apply(command.body, client: command.client) }
        let restored = try PageTable(snapshot: try first.table.snapshot())
        var index = (restored.appliedIndex() ?? 0)
        for command in commands.dropFirst(200) {
            index += 1
            _ = try restored.apply(command, index: index)
        }
        #expect(try restored.digest() == straight.table.digest())
        try checkAllocatorInvariants(restored)
    }

    @Test(arguments: [1 as UInt64, 7, 1234, 99_999])
    func twoReplicasFedTheSameRandomCommandsAgreeExactly(seed: UInt64) throws {
        let commands = randomCommands(seed: seed, count: 600)
        let first = try Replica()
        let second = try Replica()
        var results: ([ApplyResult], [ApplyResult]) = ([], [])
        for command in commands {
            results.0.append(try first.apply(command.body, client: command.client))
            results.1.append(try second.apply(command.body, client: command.client))
        }
        #expect(results.0 == results.1)
        #expect(try first.table.canonicalDump() == second.table.canonicalDump())
        #expect(try first.table.digest() == second.table.digest())
        #expect(results.0.contains { if case .allocated = $0 { true } else { false } })
        try checkAllocatorInvariants(first.table)
    }

    /// Allocs of mixed sizes, frees of live and dead addresses, writes and locks, from `seed`.
    /// The sequence depends on results it cannot know in advance only through a model of live
    /// blocks that it keeps from its own replica.
    private func randomCommands(seed: UInt64, count: Int) -> [Command] {
        var random = SplitMix64(seed: seed)
        var commands: [Command] = []
        guard let model = try? Replica() else { return [] }
        var live: [UInt64] = []
        var sequence: UInt64 = 0
        for _ in 0..<count {
            if let last = commands.last, last.client.session != 0, random.next() % 20 == 0 {
                // A client retrying its last request.
                _ = try? model.apply(last.body, client: last.client)
                commands.append(last)
                continue
            }
            let body: CommandBody
            switch random.next() % 13 {
            case 0..<4:
                let sizes: [UInt64] = [1, 8, 24, 100, 4000, 4096, 5000, 3 * 4096, 40_000]
                body = .alloc(size: sizes[Int(random.next() % UInt64(sizes.count))], member: random.next() % 3 + 1)
            case 4..<7:
                if !live.isEmpty, random.next() % 5 != 0 {
                    body = .free(address: live.remove(at: Int(random.next() % UInt64(live.count))))
                } else {
                    body = .free(address: testSettings.heapBase + (random.next() % 1000) * 8)
                }
            case 7, 8:
                let pages = (0..<(random.next() % 4 + 1)).map { _ in pageWrite(random.next() % 256) }
                body = .write(member: random.next() % 3 + 1, pages: pages, releaseLock: nil, releaseEpoch: 0)
            case 10:
                body = .lockRelease(name: "l\(random.next() % 3)", epoch: random.next() % 4)
            case 11:
                body = .barrierArrive(name: "b\(random.next() % 2)", participants: 3, member: random.next() % 3 + 1)
            case 12:
                let target = live.isEmpty ? testSettings.heapBase : live[Int(random.next() % UInt64(live.count))]
                body =
                    random.next() % 2 == 0
                    ? .atomic(address: target + (random.next() % 3) * 4, op: .add(1))
                    : .setRoot(name: "r\(random.next() % 2)", address: target)
            default:
                body = .lockAcquire(name: "l\(random.next() % 3)", member: random.next() % 3 + 1, ttlMillis: 50, now: UInt64(commands.count) * 10)
            }
            sequence += 1
            let command = Command(client: ClientTag(session: random.next() % 4, sequence: sequence), body: body)
            if case .allocated(let address)? = try? model.apply(command.body, client: command.client) { live.append(address) }
            commands.append(command)
        }
        return commands
    }
}
