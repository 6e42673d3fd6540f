import GallocyCodec
import NIOHTTP1

/// Performs one parsed request against a `NodeService`: decodes the body the endpoint expects,
/// calls the service, and renders its answer or error as the contract says. It knows nothing of
/// sockets or deadlines (that is `HTTPAPIHandler`'s job), so it can be called from any task.
package struct APIResponder: Sendable {
    package let service: any NodeService

    package init(service: any NodeService) {
        self.service = service
    }

    /// The answer to `route` with request body `body`; service and decoding errors become error
    /// answers, so this never throws.
    package func respond(to route: APIRoute, body: [UInt8]) async -> APIResponse {
        do {
            return try await perform(route, body: body)
        } catch {
            return .error(error)
        }
    }

    /// Answers `route` without a Swift task when the service offers a callback for it (memory
    /// writes and reads): calls `done` exactly once, on any thread, and returns true. Returns
    /// false, without calling `done`, for every other route; use `respond(to:body:)` then.
    package func respondWithoutTask(
        to route: APIRoute, body: [UInt8], done: @escaping @Sendable (APIResponse) -> Void
    ) -> Bool {
        switch route {
        case .writeMemory(let address):
            return service.write(address: address, bytes: body) { result in
                switch result {
                case .success(let index): done(Self.written(index))
                case .failure(let error): done(.error(error))
                }
            }
        case .readMemory(let address, let length):
            return service.read(address: address, length: length) { result in
                switch result {
                case .success(let bytes): done(.bytes(bytes))
                case .failure(let error): done(.error(error))
                }
            }
        default:
            return false
        }
    }

    static func written(_ index: UInt64) -> APIResponse { .json(.object(["index": .uint(index)])) }

    private func perform(_ route: APIRoute, body: [UInt8]) async throws(APIError) -> APIResponse {
        switch route {
        case .status:
            return .json(await service.status().json)
        case .metrics:
            let text = await service.metricsText()
            return APIResponse(status: .ok, contentType: APIResponse.prometheusContentType, body: Array(text.utf8))
        case .alloc:
            let fields = try JSONBody(body)
            let address = try await service.alloc(size: try fields.uint64("size"))
            return .json(.object(["addr": .string(HexAddress.format(address))]))
        case .free:
            let fields = try JSONBody(body)
            try await service.free(address: try fields.address("addr"))
            return .done
        case .writeMemory(let address):
            return Self.written(try await service.write(address: address, bytes: body))
        case .readMemory(let address, let length):
            let bytes = try await service.read(address: address, length: length)
            return .bytes(bytes)
        case .atomic(let address):
            let op = try JSONBody(body).atomicOp()
            let (ok, old) = try await service.atomic(address: address, op: op)
            return .json(.object(["ok": .bool(ok), "old": .uint(old)]))
        case .lockAcquire(let name):
            let fields = try JSONBody(body)
            let ttl = try fields.uint64("ttl_ms")
            let wait = try fields.optionalUInt64("wait_ms") ?? 0
            let epoch = try await service.lockAcquire(name: name, ttlMillis: ttl, waitMillis: wait)
            return .json(.object(["epoch": .uint(epoch)]))
        case .lockRelease(let name):
            let epoch = try JSONBody(body).uint64("epoch")
            try await service.lockRelease(name: name, epoch: epoch)
            return .done
        case .pages(let from, let count):
            let rows = try await service.pages(from: from, count: count)
            return .json(.array(rows.map(JSONValue.object)))
        case .snapshot:
            return .json(.object(["index": .uint(try await service.snapshot())]))
        case .leaderTransfer:
            let to = try JSONBody(body).uint64("to")
            try await service.transferLeader(to: to)
            return .done
        case .members:
            switch try JSONBody(body).membershipChange() {
            case .add(let id, let peer):
                try await service.addMember(id: id, peer: peer)
            case .remove(let id):
                try await service.removeMember(id: id)
            }
            return .done
        }
    }
}

