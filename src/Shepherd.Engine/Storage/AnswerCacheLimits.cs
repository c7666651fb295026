namespace Shepherd.Engine.Storage;

/// <summary>How large and how old an answer cache may grow.</summary>
/// <param name="MaxBytes">The most bytes of answer bodies kept; past it, the answers used longest ago go first.</param>
/// <param name="MaxAge">How long an answer is kept and used.</param>
public sealed record AnswerCacheLimits(long MaxBytes, TimeSpan MaxAge)
{
    /// <summary>1 GiB of answers, each kept 30 days.</summary>
    public static AnswerCacheLimits Default { get; } = new(1L << 30, TimeSpan.FromDays(30));
}
