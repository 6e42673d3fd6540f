import GallocyCodec

/// The state of one barrier.
package struct BarrierState: Sendable, Hashable {
    package var company: Company
    package var name: String
    package var participants: UInt32
    /// Members counted in the current generation (each once, however often it arrived).
    package var arrived: UInt32
    /// How many times the barrier opened; an arrival in generation g waits until this exceeds g.
    package var generation: UInt64
    /// The log index of the entry that opened the last generation.
    package var openedIndex: UInt64?
    /// The members that arrived in the current generation, ascending. Fewer than `arrived` only
    /// for a generation in progress in a snapshot of schema 1, which did not record who arrived.
    package var arrivedMembers: [UInt64]

    package init(
        company: Company, name: String, participants: UInt32, arrived: UInt32, generation: UInt64, openedIndex: UInt64?,
        arrivedMembers: [UInt64] = []
    ) {
        self.company = company
        self.name = name
        self.participants = participants
        self.arrived = arrived
        self.generation = generation
        self.openedIndex = openedIndex
        self.arrivedMembers = arrivedMembers
    }
}
