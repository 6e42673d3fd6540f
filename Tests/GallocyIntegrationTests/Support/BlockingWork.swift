import Foundation

/// Runs blocking socket or process calls on a thread of their own, so that async tests with many
/// concurrent clients never block the few threads of Swift's cooperative pool (two, on the
/// two-core machines these tests run on).
enum BlockingWork {
    static func run<Result: Sendable>(_ body: @escaping @Sendable () throws -> Result) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Swift.Result { try body() })
            }
        }
    }
}
