using System.Globalization;
using System.Net.Http.Headers;

namespace Shepherd.Engine.Upstreams;

/// <summary>
/// What a provider said about its limits in one answer: OpenAI's <c>x-ratelimit-*</c> headers
/// (reset as a duration such as <c>1s</c>, <c>6m0s</c>, <c>12ms</c>) or Anthropic's
/// <c>anthropic-ratelimit-*</c> headers (reset as an RFC 3339 time). Resets are turned into
/// durations from the moment the answer was read.
/// </summary>
public sealed record RateLimitSnapshot
{
    /// <summary>Requests per minute the provider allows.</summary>
    public long? RequestLimit { get; init; }

    /// <summary>Requests left in the provider's window.</summary>
    public long? RequestsRemaining { get; init; }

    /// <summary>Time until the provider's request window is full again.</summary>
    public TimeSpan? RequestsReset { get; init; }

    /// <summary>Tokens per minute the provider allows.</summary>
    public long? TokenLimit { get; init; }

    /// <summary>Tokens left in the provider's window.</summary>
    public long? TokensRemaining { get; init; }

    /// <summary>Time until the provider's token window is full again.</summary>
    public TimeSpan? TokensReset { get; init; }

    /// <summary>Input tokens per minute, where the provider limits them apart (Anthropic).</summary>
    public long? InputTokenLimit { get; init; }

    /// <summary>Input tokens left in the provider's window.</summary>
    public long? InputTokensRemaining { get; init; }

    /// <summary>Time until the provider's input-token window is full again.</summary>
    public TimeSpan? InputTokensReset { get; init; }

    /// <summary>Output tokens per minute, where the provider limits them apart (Anthropic).</summary>
    public long? OutputTokenLimit { get; init; }

    /// <summary>Output tokens left in the provider's window.</summary>
    public long? OutputTokensRemaining { get; init; }

    /// <summary>Time until the provider's output-token window is full again.</summary>
    public TimeSpan? OutputTokensReset { get; init; }

    /// <summary>Reads the rate-limit headers, or returns null when the answer has none.</summary>
    public static RateLimitSnapshot? Read(HttpResponseHeaders headers, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(headers);
        // Where Anthropic limits input and output tokens apart, its tokens-* headers only repeat
        // whichever of the two is the tighter at the moment: the two are read, not the repetition.
        var split = headers.Contains("anthropic-ratelimit-input-tokens-limit") || headers.Contains("anthropic-ratelimit-output-tokens-limit");
        var snapshot = new RateLimitSnapshot
        {
            RequestLimit = Number(headers, "x-ratelimit-limit-requests") ?? Number(headers, "anthropic-ratelimit-requests-limit"),
            RequestsRemaining = Number(headers, "x-ratelimit-remaining-requests") ?? Number(headers, "anthropic-ratelimit-requests-remaining"),
            RequestsReset = Duration(headers, "x-ratelimit-reset-requests") ?? Until(headers, "anthropic-ratelimit-requests-reset", now),
            TokenLimit = Number(headers, "x-ratelimit-limit-tokens") ?? (split ? null : Number(headers, "anthropic-ratelimit-tokens-limit")),
            TokensRemaining = Number(headers, "x-ratelimit-remaining-tokens") ?? (split ? null : Number(headers, "anthropic-ratelimit-tokens-remaining")),
            TokensReset = Duration(headers, "x-ratelimit-reset-tokens") ?? (split ? null : Until(headers, "anthropic-ratelimit-tokens-reset", now)),
            InputTokenLimit = Number(headers, "anthropic-ratelimit-input-tokens-limit"),
            InputTokensRemaining = Number(headers, "anthropic-ratelimit-input-tokens-remaining"),
            InputTokensReset = Until(headers, "anthropic-ratelimit-input-tokens-reset", now),
            OutputTokenLimit = Number(headers, "anthropic-ratelimit-output-tokens-limit"),
            OutputTokensRemaining = Number(headers, "anthropic-ratelimit-output-tokens-remaining"),
            OutputTokensReset = Until(headers, "anthropic-ratelimit-output-tokens-reset", now),
        };
        return snapshot.RequestLimit is null && snapshot.TokenLimit is null && snapshot.InputTokenLimit is null && snapshot.OutputTokenLimit is null
            && snapshot.RequestsReset is null && snapshot.TokensReset is null && snapshot.InputTokensReset is null && snapshot.OutputTokensReset is null
            ? null
            : snapshot;
    }

    /// <summary>The limit per minute the provider announced for <paramref name="kind"/>, if it did.</summary>
    internal long? LimitOf(Dispatch.LimitKind kind) => kind switch
    {
        Dispatch.LimitKind.Requests => RequestLimit,
        Dispatch.LimitKind.Tokens => TokenLimit,
        Dispatch.LimitKind.InputTokens => InputTokenLimit,
        _ => OutputTokenLimit,
    };

    /// <summary>How long until the provider's bucket for <paramref name="kind"/> is empty, if it said.</summary>
    internal TimeSpan? ResetOf(Dispatch.LimitKind kind) => kind switch
    {
        Dispatch.LimitKind.Requests => RequestsReset,
        Dispatch.LimitKind.Tokens => TokensReset,
        Dispatch.LimitKind.InputTokens => InputTokensReset,
        _ => OutputTokensReset,
    };

    /// <summary>
    /// Parses a duration as OpenAI writes it: numbers with units <c>h</c>, <c>m</c>, <c>s</c>,
    /// <c>ms</c>, <c>us</c>, <c>ns</c>, such as <c>1h2m3.5s</c> or <c>12ms</c>; a bare number is seconds.
    /// </summary>
    public static TimeSpan? ParseDuration(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        var span = text.AsSpan().Trim();
        if (double.TryParse(span, NumberStyles.Float, CultureInfo.InvariantCulture, out var bare))
        {
            return bare >= 0 ? TimeSpan.FromSeconds(bare) : null;
        }

        var total = 0.0;
        while (!span.IsEmpty)
        {
            var digits = 0;
            while (digits < span.Length && (char.IsAsciiDigit(span[digits]) || span[digits] == '.'))
            {
                digits++;
            }

            var letters = digits;
            while (letters < span.Length && char.IsAsciiLetter(span[letters]) || letters < span.Length && span[letters] == 'µ')
            {
                letters++;
            }

            if (digits == 0 || letters == digits
                || !double.TryParse(span[..digits], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                return null;
            }

            double? unit = span[digits..letters] switch
            {
                "d" => 86_400_000,
                "h" => 3600_000,
                "m" => 60_000,
                "s" => 1000,
                "ms" => 1,
                "us" or "µs" => 0.001,
                "ns" => 0.000001,
                _ => null,
            };
            if (unit is null)
            {
                return null;
            }

            total += value * unit.Value;
            span = span[letters..];
        }

        return TimeSpan.FromMilliseconds(total);
    }

    private static long? Number(HttpResponseHeaders headers, string name) =>
        headers.TryGetValues(name, out var values) && long.TryParse(values.FirstOrDefault(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var number) && number >= 0
            ? number
            : null;

    private static TimeSpan? Duration(HttpResponseHeaders headers, string name) =>
        headers.TryGetValues(name, out var values) ? ParseDuration(values.FirstOrDefault()) : null;

    private static TimeSpan? Until(HttpResponseHeaders headers, string name, DateTimeOffset now)
    {
        if (!headers.TryGetValues(name, out var values)
            || !DateTimeOffset.TryParse(values.FirstOrDefault(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
        {
            return null;
        }

        var wait = at - now;
        return wait < TimeSpan.Zero ? TimeSpan.Zero : wait;
    }
}
