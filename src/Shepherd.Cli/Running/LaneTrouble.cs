using Shepherd.Engine.Dispatch;

namespace Shepherd.Cli.Running;

/// <summary>A lane that does not send, as the progress line and <c>status</c> describe it.</summary>
/// <param name="Upstream">The upstream's name.</param>
/// <param name="Model">The model.</param>
/// <param name="KeyRefused">True when the upstream refuses the key; false when it cannot be reached.</param>
/// <param name="Since">Since when.</param>
/// <param name="Reason">The last failure or refusal in words.</param>
/// <param name="NextProbeAt">When the next probe goes.</param>
internal sealed record LaneTrouble(string Upstream, string Model, bool KeyRefused, DateTimeOffset Since, string? Reason, DateTimeOffset NextProbeAt)
{
    /// <summary>The lanes of <paramref name="lanes"/> that do not send, in words; null when every one sends.</summary>
    public static string? Describe(IEnumerable<LaneState> lanes, DateTimeOffset now) =>
        Describe(lanes.Where(lane => lane.Halt is not null).Select(lane => new LaneTrouble(
            lane.Upstream, lane.Model, lane.Halt!.Condition == LaneCondition.KeyRefused, lane.Halt.Since, lane.Halt.Reason, lane.Halt.NextProbeAt)), now);

    /// <summary>A lane a server reports, when it does not send; null when it does.</summary>
    public static LaneTrouble? Of(Client.BatchLane lane) => lane.IsStopped
        ? new LaneTrouble(lane.Upstream, lane.Model, lane.State == "key_refused", lane.Since ?? DateTimeOffset.UnixEpoch, lane.Reason, lane.NextProbeAt ?? DateTimeOffset.UnixEpoch)
        : null;

    /// <summary>
    /// One phrase per upstream that cannot be reached (however many models it serves) and per
    /// lane whose key is refused, joined; null when there is none.
    /// </summary>
    public static string? Describe(IEnumerable<LaneTrouble> troubles, DateTimeOffset now)
    {
        var phrases = troubles
            .DistinctBy(trouble => trouble.KeyRefused ? (trouble.Upstream, trouble.Model) : (trouble.Upstream, ""))
            .Select(trouble => trouble.Describe(now))
            .ToList();
        return phrases.Count == 0 ? null : string.Join("; ", phrases);
    }

    /// <summary>"api.example refuses the key for gpt-4o (HTTP 401: …) since 1m20s; next probe in 25s", or "… is down …".</summary>
    public string Describe(DateTimeOffset now)
    {
        var what = KeyRefused ? $"{Upstream} refuses the key for {Model}" : $"{Upstream} is down";
        var probe = NextProbeAt > now ? $"next probe in {ProgressDisplay.FormatDuration(NextProbeAt - now)}" : "probing now";
        var reason = string.IsNullOrEmpty(Reason) ? "" : $" ({Reason})";
        return $"{what}{reason}, for {ProgressDisplay.FormatDuration(now - Since)}; {probe}";
    }
}
