/// The Raft core arrives with its own issue; this file marks the module's entry point.
public enum RaftCore {}
