namespace Shepherd.Engine.Storage;

/// <summary>
/// A store several nodes share. Each node says it is alive with a heartbeat; a node that stops
/// beating for longer than <see cref="NodeTimeout"/> is dead, and its leases go back to the
/// queue for the others. Nodes tell each other when batches change, and hold roles (work only
/// one node should do at a time, such as writing result files) by lease.
/// </summary>
public interface IClusterStore
{
    /// <summary>This node's name, unique among the nodes sharing the store.</summary>
    string NodeName { get; }

    /// <summary>How long a node may stay silent before the others take its leases and roles.</summary>
    TimeSpan NodeTimeout { get; }

    /// <summary>
    /// Raised, on a background thread, when another node changed batches (created, accepted,
    /// cancelled, ended) or released a dead node's work. Handlers must be quick.
    /// </summary>
    event Action? Changed;

    /// <summary>
    /// Records that this node is alive and sends on <paramref name="lanes"/>; releases the leases
    /// of nodes silent for longer than <see cref="NodeTimeout"/>. Returns how many nodes are
    /// alive and, for each lane other live nodes send on, how many of them do.
    /// </summary>
    Task<ClusterView> HeartbeatAsync(IReadOnlyCollection<string> lanes, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Takes <paramref name="role"/>, or keeps it, for <see cref="NodeTimeout"/> from
    /// <paramref name="now"/>: it is free, lapsed, or already this node's. Returns whether this
    /// node holds it now.
    /// </summary>
    Task<bool> HoldRoleAsync(string role, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Lets go of everything this node holds (its roles, its place among the nodes) when it stops cleanly.</summary>
    Task LeaveAsync(CancellationToken cancellationToken);
}

/// <summary>What a node learns from its heartbeat.</summary>
/// <param name="Nodes">The live nodes, this one included.</param>
/// <param name="OthersOnLanes">For each lane other live nodes send on, how many of them do.</param>
public sealed record ClusterView(int Nodes, IReadOnlyDictionary<string, int> OthersOnLanes)
{
    /// <summary>
    /// True when the node was not among the live ones before this beat: it is new, or it was
    /// silent for so long that the others took it for dead and took its leases.
    /// </summary>
    public bool Joined { get; init; }

    /// <summary>A node alone: nothing to share.</summary>
    public static ClusterView Alone { get; } = new(1, new Dictionary<string, int>());
}
