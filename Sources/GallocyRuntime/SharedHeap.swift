import CGallocyRuntime

/// The shared heap of one process. The mappings, the fault service and release consistency
/// arrive with the runtime issue; this type pins the layer's place in the package.
package enum SharedHeap {
    /// The operating system's page size, which bounds the heap's page size from below.
    package static var systemPageSize: Int { Int(CGallocyRuntime_page_size()) }
}
