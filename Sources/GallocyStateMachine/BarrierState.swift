import GallocyCodec

/// The state of one barrier.
package struct BarrierState: Sendable, Hashable {
    package var company: Company
    package var name: String
    package var participants: UInt32
    /// Arrivals counted in the current generation.
    package var arrived: UInt32
    /// How many times the barrier opened; an arrival in generation g waits until this exceeds g.
    package var generation: UInt64
    /// The log index of the entry that opened the last generation.
    package var openedIndex: UInt64?

    package init(company: Company, name: String, participants: UInt32, arrived: UInt32, generation: UInt64, openedIndex: UInt64?) {
        self.company = company
        self.name = name
        self.participants = participants
        self.arrived = arrived
        self.generation = generation
        self.openedIndex = openedIndex
    }
}
