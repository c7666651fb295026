namespace Shepherd.Engine.Upstreams;

/// <summary>
/// What one request to an upstream produced: an HTTP answer (any status), or a failure before
/// one arrived. Never holds a credential.
/// </summary>
public sealed record UpstreamResponse
{
    /// <summary>The HTTP status; null when no answer arrived.</summary>
    public int? StatusCode { get; init; }

    /// <summary>The answer body as received.</summary>
    public byte[]? Body { get; init; }

    /// <summary>The upstream's id for the request (<c>x-request-id</c> or <c>request-id</c>).</summary>
    public string? RequestId { get; init; }

    /// <summary>How long the upstream asked to wait (<c>retry-after-ms</c> or <c>retry-after</c>).</summary>
    public TimeSpan? RetryAfter { get; init; }

    /// <summary>The upstream's own verdict from <c>x-should-retry</c>, when it sent one.</summary>
    public bool? ShouldRetry { get; init; }

    /// <summary>The upstream's rate-limit headers, when it sent any.</summary>
    public RateLimitSnapshot? RateLimits { get; init; }

    /// <summary>For a realtime call, the answer's headers a client relies on, as received; null for batch work, which keeps none.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? Headers { get; init; }

    /// <summary>Shepherd's code when no answer arrived: <c>request_timeout</c>, <c>connection_error</c>, <c>response_too_large</c>.</summary>
    public string? FailureCode { get; init; }

    /// <summary>The words for <see cref="FailureCode"/>.</summary>
    public string? FailureMessage { get; init; }
}

/// <summary>Codes for attempts that ended without an HTTP answer.</summary>
public static class FailureCodes
{
    /// <summary>The request was not sent: with what was spent and reserved, it could have taken the batch over its budget.</summary>
    public const string BudgetExceeded = "budget_exceeded";

    /// <summary>The attempt took longer than the request timeout.</summary>
    public const string RequestTimeout = "request_timeout";

    /// <summary>The connection could not be made or broke.</summary>
    public const string ConnectionError = "connection_error";

    /// <summary>The answer was larger than the configured limit.</summary>
    public const string ResponseTooLarge = "response_too_large";

    /// <summary>A 2xx answer whose body was not JSON.</summary>
    public const string InvalidResponse = "invalid_response";

    /// <summary>A 2xx answer that did not parse as the JSON its request asked for, or did not fit its schema, as often as it was asked again.</summary>
    public const string InvalidOutput = "invalid_output";
}
