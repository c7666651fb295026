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

    /// <summary>Reads the rate-limit headers, or returns null when the answer has none.</summary>
    public static RateLimitSnapshot? Read(HttpResponseHeaders headers, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(headers);
        var snapshot = new RateLimitSnapshot
        {
            RequestLimit = Number(headers, "x-ratelimit-limit-requests") ?? Number(headers, "anthropic-ratelimit-requests-limit"),
            RequestsRemaining = Number(headers, "x-ratelimit-remaining-requests") ?? Number(headers, "anthropic-ratelimit-requests-remaining"),
            RequestsReset = Duration(headers, "x-ratelimit-reset-requests") ?? Until(headers, "anthropic-ratelimit-requests-reset", now),
            TokenLimit = Number(headers, "x-ratelimit-limit-tokens") ?? Number(headers, "anthropic-ratelimit-tokens-limit") ?? Number(headers, "anthropic-ratelimit-input-tokens-limit"),
            TokensRemaining = Number(headers, "x-ratelimit-remaining-tokens") ?? Number(headers, "anthropic-ratelimit-tokens-remaining") ?? Number(headers, "anthropic-ratelimit-input-tokens-remaining"),
            TokensReset = Duration(headers, "x-ratelimit-reset-tokens") ?? Until(headers, "anthropic-ratelimit-tokens-reset", now) ?? Until(headers, "anthropic-ratelimit-input-tokens-reset", now),
        };
        return snapshot.RequestLimit is null && snapshot.TokenLimit is null && snapshot.RequestsReset is null && snapshot.TokensReset is null ? null : snapshot;
    }

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
