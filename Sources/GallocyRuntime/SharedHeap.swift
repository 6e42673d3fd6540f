import CGallocyRuntime

/// The shared heap of one process. Today it names the runtime's constants; the heap's mappings
/// are `HeapMapping`, and release/acquire on top of them arrive with the runtime issue.
package enum SharedHeap {
    /// The operating system's page size, which bounds the heap's page size from below.
    package static var systemPageSize: Int { Int(CGallocyRuntime_page_size()) }

    /// The default base of the application view: 32 TiB, far above the program's own heap (brk
    /// next to the executable) and far below the mmap area and stacks (under 128 TiB).
    package static let defaultBase: UInt = 0x2000_0000_0000

    /// The end of user space on x86_64 and arm64 with 4-level page tables (47-bit addresses).
    package static let userSpaceEnd: UInt = 1 << 47
}
