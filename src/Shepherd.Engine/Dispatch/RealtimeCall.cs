using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// A request that cannot wait, sent by the dispatcher through the same lanes as batch work and
/// ahead of it: one rate limit for both. It lives in memory only (its caller waits for it);
/// a transient failure is tried again while the caller's deadline allows.
/// </summary>
public sealed class RealtimeCall
{
    private readonly TaskCompletionSource<RealtimeAnswer> _answer = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A call of <paramref name="url"/> with <paramref name="body"/> for <paramref name="owner"/>, answered by <paramref name="deadline"/> at the latest.</summary>
    /// <param name="url">The API path, one of <see cref="Formats.BatchEndpoints.All"/>.</param>
    /// <param name="model">The model the body names.</param>
    /// <param name="body">The body to send, as it goes upstream.</param>
    /// <param name="owner">The tenant the call's cost counts for; null on a server without keys.</param>
    /// <param name="deadline">When the caller stops waiting: no attempt is started after it.</param>
    public RealtimeCall(string url, string model, byte[] body, string? owner, DateTimeOffset deadline)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(body);
        Url = url;
        Model = model;
        Body = body;
        Owner = owner;
        Deadline = deadline;
    }

    /// <summary>The API path.</summary>
    public string Url { get; }

    /// <summary>The model the body names.</summary>
    public string Model { get; }

    /// <summary>The body as sent upstream.</summary>
    public byte[] Body { get; }

    /// <summary>The tenant the call's cost counts for.</summary>
    public string? Owner { get; }

    /// <summary>When the caller stops waiting.</summary>
    public DateTimeOffset Deadline { get; }

    /// <summary>
    /// True when the answer is to be streamed: a 2xx answer comes back as soon as its headers are
    /// in, and its events are relayed as they arrive.
    /// </summary>
    public bool Stream { get; init; }

    /// <summary>
    /// For a stream, true when the caller did not ask for usage and Shepherd asked for it (to
    /// price the call): the usage-only event is taken out before the caller sees it.
    /// </summary>
    public bool HideUsage { get; init; }

    /// <summary>Cancelled when the caller goes away: the upstream call is cancelled with it.</summary>
    public CancellationToken Aborted { get; init; }

    /// <summary>Attempts sent so far.</summary>
    public int Attempts { get; internal set; }

    /// <summary>The last answer an attempt brought back, given to the caller if the deadline passes before a better one.</summary>
    internal UpstreamResponse? Last { get; set; }

    /// <summary>The answer: completes once, with the provider's answer or Shepherd's own reason.</summary>
    public Task<RealtimeAnswer> Answer => _answer.Task;

    /// <summary>True once the call has its answer (or its caller left): nothing more is sent for it.</summary>
    public bool IsDone => _answer.Task.IsCompleted;

    internal bool Reply(RealtimeAnswer answer) => _answer.TrySetResult(answer);

    /// <summary>The item the lanes see: no batch, no store id, ahead of every batch item.</summary>
    internal ClaimedItem AsItem() => new(0, "", 0, "", Model, Body, Attempts + 1, BatchPriority.High, Url);
}

/// <summary>
/// What a realtime call's caller gets: the provider's answer as it gave it (status, headers,
/// body, or the events of a stream still to be relayed), or, when none came back in time,
/// Shepherd's own error.
/// </summary>
public sealed class RealtimeAnswer
{
    /// <summary>The provider's HTTP status; null when Shepherd answers itself (see <see cref="Error"/>).</summary>
    public int? StatusCode { get; init; }

    /// <summary>The provider's headers a client relies on (ids, rate limits, content type).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];

    /// <summary>The provider's body, for an answer read whole.</summary>
    public byte[]? Body { get; init; }

    /// <summary>For a streamed 2xx answer, the events still to be relayed.</summary>
    public StreamRelay? Events { get; init; }

    /// <summary>Shepherd's own answer when the provider's is not given: the status, a code and words.</summary>
    public RealtimeError? Error { get; init; }

    /// <summary>Attempts sent for the call.</summary>
    public int Attempts { get; init; }

    internal static RealtimeAnswer Of(UpstreamResponse response, int attempts) => response.StatusCode is null
        ? new RealtimeAnswer
        {
            Attempts = attempts,
            Error = response.FailureCode == FailureCodes.RequestTimeout
                ? new RealtimeError(504, "upstream_timeout", $"The upstream did not answer in time: {response.FailureMessage}.")
                : new RealtimeError(502, "upstream_unreachable", $"The upstream could not be reached: {response.FailureMessage}."),
        }
        : new RealtimeAnswer { StatusCode = response.StatusCode, Headers = response.Headers ?? [], Body = response.Body, Attempts = attempts };
}

/// <summary>An error Shepherd gives a realtime call itself, in the door's envelope.</summary>
/// <param name="Status">The HTTP status.</param>
/// <param name="Code">A stable code, such as <c>upstream_unavailable</c>.</param>
/// <param name="Message">What happened and what to do, in words.</param>
/// <param name="RetryAfter">When a new call may succeed, when known.</param>
public sealed record RealtimeError(int Status, string Code, string Message, TimeSpan? RetryAfter = null);
