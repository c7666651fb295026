namespace Shepherd.Engine.Dispatch;

/// <summary>Whether a lane sends, and if not, why.</summary>
public enum LaneCondition
{
    /// <summary>It sends as its limits allow.</summary>
    Sending,

    /// <summary>A <c>retry-after</c> holds it for a while.</summary>
    Paused,

    /// <summary>Its upstream is down (its breaker is open: it cannot be reached, or fails every request): only probes go.</summary>
    Down,

    /// <summary>Its upstream refused its key a few times in a row: only probes go, and its requests wait without using attempts.</summary>
    KeyRefused,
}

/// <summary>Why a lane does not send.</summary>
/// <param name="Condition"><see cref="LaneCondition.Down"/> or <see cref="LaneCondition.KeyRefused"/>.</param>
/// <param name="Since">Since when: the first failure of the run that took the upstream for down, or the refusal that stopped the lane.</param>
/// <param name="Reason">The last failure or refusal in words ("connection failed: Connection refused", "HTTP 401: Invalid API key").</param>
/// <param name="NextProbeAt">When the next probe may go.</param>
public sealed record LaneHalt(LaneCondition Condition, DateTimeOffset Since, string? Reason, DateTimeOffset NextProbeAt);

/// <summary>A lane as the dispatcher last saw it.</summary>
/// <param name="Upstream">The upstream's name.</param>
/// <param name="Model">The model.</param>
/// <param name="RequestsPerMinute">The request rate it keeps to (this node's share), when it has one.</param>
/// <param name="TokensPerMinute">The token rate it keeps to (this node's share), when it has one.</param>
/// <param name="ConcurrencyLimit">Its current concurrency limit.</param>
/// <param name="InFlight">Its requests in flight.</param>
/// <param name="PausedUntil">Until when a <c>retry-after</c> holds it, when it does.</param>
/// <param name="Share">Its share of the limits among nodes sending on it.</param>
public sealed record LaneState(string Upstream, string Model, double? RequestsPerMinute, double? TokensPerMinute, int ConcurrencyLimit, int InFlight, DateTimeOffset? PausedUntil, double Share)
{
    /// <summary>Why it does not send, when it does not; null while it can.</summary>
    public LaneHalt? Halt { get; init; }

    /// <summary>Whether it sends, and if not, why.</summary>
    public LaneCondition Condition => Halt?.Condition ?? (PausedUntil is null ? LaneCondition.Sending : LaneCondition.Paused);
}

/// <summary>An upstream's circuit breaker as the dispatcher last saw it.</summary>
/// <param name="Upstream">The upstream's name.</param>
/// <param name="State">Closed, open or half-open.</param>
public sealed record BreakerSnapshot(string Upstream, BreakerState State);
