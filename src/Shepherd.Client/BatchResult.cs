using System.Text.Json;

namespace Shepherd.Client;

/// <summary>How a request of a batch ended.</summary>
public enum ResultStatus
{
    /// <summary>The provider answered.</summary>
    Succeeded,
    /// <summary>The request failed for good (after retries of transient failures).</summary>
    Failed,
    /// <summary>The batch was cancelled before the request was sent.</summary>
    Cancelled,
    /// <summary>The completion window ended before the request was sent.</summary>
    Expired,

    /// <summary>Not ended yet.</summary>
    Pending,
}

/// <summary>Tokens a request used.</summary>
public sealed record ResultUsage(long InputTokens, long OutputTokens);

/// <summary>Why a request failed: the provider's error code and message, and its HTTP status when there was an answer.</summary>
public sealed record ResultError(string? Code, string Message, int? StatusCode);

/// <summary>The result of one request.</summary>
public sealed record BatchResult
{
    /// <summary>The request's custom id.</summary>
    public required string CustomId { get; init; }

    /// <summary>How the request ended.</summary>
    public required ResultStatus Status { get; init; }

    /// <summary>The provider's answer (the response body), when it succeeded.</summary>
    public JsonElement? Answer { get; init; }

    /// <summary>The answer's text, for chat, completions, responses and messages answers.</summary>
    public string? Text { get; init; }

    /// <summary>Tokens the answer used, when it succeeded.</summary>
    public ResultUsage? Usage { get; init; }

    /// <summary>What the request cost, in US dollars (0 where the server does not price).</summary>
    public decimal CostUsd { get; init; }

    /// <summary>Why it failed, when it did not succeed.</summary>
    public ResultError? Error { get; init; }

    /// <summary>The result line as the server sent it.</summary>
    public required JsonElement Line { get; init; }
}
