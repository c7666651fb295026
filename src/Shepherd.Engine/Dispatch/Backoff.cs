namespace Shepherd.Engine.Dispatch;

/// <summary>Exponential backoff with full jitter, capped, and never shorter than what the upstream asked for.</summary>
internal static class Backoff
{
    /// <summary>
    /// The wait before attempt <paramref name="attempt"/> + 1: uniform in [0, min(cap, base·2^(attempt−1))],
    /// or <paramref name="retryAfter"/> when that is longer.
    /// </summary>
    public static TimeSpan Delay(int attempt, TimeSpan baseDelay, TimeSpan maxDelay, TimeSpan? retryAfter, Random random)
    {
        var exponent = Math.Min(Math.Max(attempt - 1, 0), 30);
        var ceiling = Math.Min(maxDelay.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, exponent));
        var jittered = TimeSpan.FromMilliseconds(random.NextDouble() * ceiling);
        return retryAfter is { } asked && asked > jittered ? asked : jittered;
    }
}
