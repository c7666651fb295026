namespace Shepherd.Client;

/// <summary>Where a batch is in its life.</summary>
public enum BatchStatus
{
    /// <summary>Its input is being checked.</summary>
    Validating,

    /// <summary>Its requests are being sent.</summary>
    InProgress,

    /// <summary>Every request has ended; its result files are being written.</summary>
    Finalizing,

    /// <summary>Every request has ended (some may have failed).</summary>
    Completed,

    /// <summary>Its input was refused; <see cref="Batch.Errors"/> says why. Nothing was sent.</summary>
    Failed,

    /// <summary>A cancel was asked for; requests in flight are still returning.</summary>
    Cancelling,

    /// <summary>Cancelled; what had finished keeps its result.</summary>
    Cancelled,

    /// <summary>Its completion window passed; what had finished keeps its result.</summary>
    Expired,

    /// <summary>
    /// A status this client does not know, such as one a newer server has added:
    /// <see cref="Batch.StatusName"/> holds the API's word. The batch is not taken to have ended.
    /// </summary>
    Unknown,
}

/// <summary>The names the batch APIs give <see cref="BatchStatus"/> values.</summary>
public static class BatchStatusNames
{
    private static readonly (BatchStatus Status, string Name)[] Names =
    [
        (BatchStatus.Validating, "validating"),
        (BatchStatus.InProgress, "in_progress"),
        (BatchStatus.Finalizing, "finalizing"),
        (BatchStatus.Completed, "completed"),
        (BatchStatus.Failed, "failed"),
        (BatchStatus.Cancelling, "cancelling"),
        (BatchStatus.Cancelled, "cancelled"),
        (BatchStatus.Expired, "expired"),
    ];

    /// <summary>The status as the OpenAI and Shepherd APIs write it, such as <c>in_progress</c>; <c>unknown</c> for <see cref="BatchStatus.Unknown"/>.</summary>
    public static string ToApiName(this BatchStatus status) => Names.Where(n => n.Status == status).Select(n => n.Name).FirstOrDefault() ?? "unknown";

    /// <summary>The status an API name stands for, or null for a name this client does not know.</summary>
    public static BatchStatus? FromApiName(string? name) => Names.Where(n => n.Name == name).Select(n => (BatchStatus?)n.Status).FirstOrDefault();
}

/// <summary>A problem with a batch's input: what, and on which line.</summary>
public sealed record BatchError(string Code, string Message, long? Line);

/// <summary>A batch as the server last described it.</summary>
public sealed record Batch
{
    /// <summary>The batch id, such as <c>batch_…</c>.</summary>
    public required string Id { get; init; }

    /// <summary>Where the batch is in its life.</summary>
    public required BatchStatus Status { get; init; }

    /// <summary>
    /// The batch object as the API sent it, for fields this type does not name (a newer server's,
    /// a provider's own); an undefined element for a batch not read from an API.
    /// </summary>
    public System.Text.Json.JsonElement Raw { get; init; }

    /// <summary>The HTTP answer this description came in (status, request id, headers); null for a batch not read from an API.</summary>
    public ApiResponse? Response { get; init; }

    /// <summary>The status as the API wrote it: the word behind <see cref="BatchStatus.Unknown"/> too.</summary>
    public string StatusName
    {
        get => field ?? Status.ToApiName();
        init;
    }

    /// <summary>The url every request goes to, such as <c>/v1/chat/completions</c>.</summary>
    public string? Endpoint { get; init; }

    /// <summary>The batch's model, when it has one.</summary>
    public string? Model { get; init; }

    /// <summary>Requests in the batch.</summary>
    public long Total { get; init; }

    /// <summary>Requests that succeeded.</summary>
    public long Succeeded { get; init; }

    /// <summary>Requests that ended without an answer: failed, cancelled or expired.</summary>
    public long Failed { get; init; }

    /// <summary>
    /// Requests among <see cref="Failed"/> that were cancelled before they were sent. A Shepherd
    /// server and the Anthropic API say how many; the OpenAI API does not, and this is 0 there.
    /// </summary>
    public long Cancelled { get; init; }

    /// <summary>Requests among <see cref="Failed"/> that the batch's window closed on before they were sent (known as <see cref="Cancelled"/> is).</summary>
    public long Expired { get; init; }

    /// <summary>Requests that have ended, however.</summary>
    public long Finished => Succeeded + Failed;

    /// <summary>Finished requests as a share of all, 0 to 100.</summary>
    public double Percent => Total == 0 ? 0 : 100.0 * Finished / Total;

    /// <summary>Prompt tokens of the answers so far.</summary>
    public long InputTokens { get; init; }

    /// <summary>Answer tokens so far.</summary>
    public long OutputTokens { get; init; }

    /// <summary>What the batch has cost so far, in US dollars (0 where the server does not price).</summary>
    public decimal CostUsd { get; init; }

    /// <summary>When the batch was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>When sending began.</summary>
    public DateTimeOffset? InProgressAt { get; init; }

    /// <summary>When the batch ended (completed, failed, cancelled or expired).</summary>
    public DateTimeOffset? EndedAt { get; init; }

    /// <summary>When its completion window ends, if it has one.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>The uploaded file the batch was made of, if any.</summary>
    public string? InputFileId { get; init; }

    /// <summary>The file of successful results, once the batch has ended.</summary>
    public string? OutputFileId { get; init; }

    /// <summary>The file of failed results, once the batch has ended.</summary>
    public string? ErrorFileId { get; init; }

    /// <summary>The metadata given at creation.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>Why the input was refused, when the batch failed.</summary>
    public IReadOnlyList<BatchError> Errors { get; init; } = [];

    /// <summary>How a Shepherd server sends the batch's requests (null where the API says none, as the OpenAI and Anthropic APIs do).</summary>
    public BatchMode? Mode { get; init; }

    /// <summary>The most the batch may cost, in US dollars, when it has a budget (a Shepherd server's).</summary>
    public decimal? BudgetUsd { get; init; }

    /// <summary>Requests not sent because the budget could no longer pay them (they count among <see cref="Failed"/>).</summary>
    public long BudgetExceededRequests { get; init; }

    /// <summary>The answers by the tier that answered them, and what the cheaper tiers saved (a Shepherd server says so).</summary>
    public BatchTiers Tiers { get; init; } = BatchTiers.None;

    /// <summary>
    /// Requests among <see cref="Succeeded"/> answered without being sent, at no cost: from the
    /// server's answer cache, or kept from an earlier run of the same input (a Shepherd server
    /// says so; 0 elsewhere).
    /// </summary>
    public long Cached { get; init; }

    /// <summary>What the <see cref="Cached"/> answers cost when they were bought, in US dollars: what the cache saved.</summary>
    public decimal CacheSavedUsd { get; init; }

    /// <summary>How the answers checked against the structured output their requests asked for came out (a Shepherd server says so).</summary>
    public BatchOutputChecks Output { get; init; } = BatchOutputChecks.None;

    /// <summary>
    /// The lanes that serve the batch while it is in progress (a Shepherd server says so when the
    /// batch is read by its id; empty otherwise), among them any that do not send and why.
    /// </summary>
    public IReadOnlyList<BatchLane> Lanes { get; init; } = [];

    /// <summary>True once nothing more will happen to the batch.</summary>
    public bool HasEnded => Status is BatchStatus.Completed or BatchStatus.Failed or BatchStatus.Cancelled or BatchStatus.Expired;
}

/// <summary>An upstream serving one of a batch's models, as a Shepherd server sees it now.</summary>
/// <param name="Upstream">The upstream's name.</param>
/// <param name="Model">The model.</param>
/// <param name="State"><c>sending</c>, <c>paused</c> (by a retry-after), <c>down</c> (its upstream cannot be reached, or fails every request) or <c>key_refused</c>.</param>
/// <param name="Since">Since when it has been down or refused the key.</param>
/// <param name="Reason">The last failure or refusal, in words.</param>
/// <param name="NextProbeAt">When the server next tries it, while it does not send.</param>
public sealed record BatchLane(string Upstream, string Model, string State, DateTimeOffset? Since, string? Reason, DateTimeOffset? NextProbeAt)
{
    /// <summary>True when the lane sends nothing but probes: its upstream is down or refuses the key.</summary>
    public bool IsStopped => State is "down" or "key_refused";
}

/// <summary>How a wait for a batch ended.</summary>
/// <param name="Batch">The batch as last seen.</param>
/// <param name="TimedOut">True when the wait gave up before the batch ended; the batch goes on.</param>
public sealed record BatchCompletion(Batch Batch, bool TimedOut)
{
    /// <summary>True when the batch completed and every request succeeded.</summary>
    public bool AllSucceeded => !TimedOut && Batch.Status == BatchStatus.Completed && Batch.Failed == 0;
}

/// <summary>Progress while waiting for a batch.</summary>
/// <param name="Batch">The batch as just seen.</param>
/// <param name="Eta">When the batch should end at the rate seen so far; null until there is a rate.</param>
public sealed record BatchProgress(Batch Batch, TimeSpan? Eta)
{
    /// <summary>Requests that have ended.</summary>
    public long Finished => Batch.Finished;

    /// <summary>Requests in the batch.</summary>
    public long Total => Batch.Total;

    /// <summary>Ended requests as a share of all, 0 to 100.</summary>
    public double Percent => Batch.Percent;

    /// <summary>What the batch has cost so far, in US dollars.</summary>
    public decimal CostUsd => Batch.CostUsd;

    /// <summary>
    /// What the whole batch will cost: the cost so far, and the requests still to end at the cost
    /// per succeeded request so far (failures cost nothing, so they do not bring the projection
    /// down to 0); null before the first request succeeds.
    /// </summary>
    public decimal? ProjectedCostUsd => Batch.Succeeded == 0 ? null : Batch.CostUsd + (Batch.CostUsd / Batch.Succeeded * (Batch.Total - Batch.Finished));

    /// <summary>
    /// Since when the server could not be reached, while the wait rides out an outage
    /// (<see cref="Batch"/> is then the batch as last seen); null while it answers.
    /// </summary>
    public DateTimeOffset? UnreachableSince { get; init; }

    /// <summary>Why the last look at the batch failed, while <see cref="Reconnecting"/>.</summary>
    public string? ReconnectReason { get; init; }

    /// <summary>
    /// True while the wait cannot reach the server and keeps trying, up to
    /// <see cref="ShepherdClientOptions.WaitOutageTolerance"/>.
    /// </summary>
    public bool Reconnecting => UnreachableSince is not null;
}

/// <summary>The answers of one tier and what they cost.</summary>
/// <param name="Requests">Requests that tier answered.</param>
/// <param name="CostUsd">What they cost, in US dollars.</param>
public sealed record TierAnswers(long Requests, decimal CostUsd);

/// <summary>How a batch's answers checked against the structured output their requests asked for came out.</summary>
/// <param name="ValidFirst">Requests whose first answer fitted.</param>
/// <param name="ValidReasked">Requests whose answer fitted once asked again.</param>
/// <param name="Invalid">Requests that failed with <c>invalid_output</c>: no answer fitted.</param>
/// <param name="Reasked">Answers that did not fit and were asked again.</param>
/// <param name="ReaskCostUsd">What those answers cost, in US dollars.</param>
public sealed record BatchOutputChecks(long ValidFirst, long ValidReasked, long Invalid, long Reasked, decimal ReaskCostUsd)
{
    /// <summary>Nothing checked.</summary>
    public static BatchOutputChecks None { get; } = new(0, 0, 0, 0, 0);
}

/// <summary>A batch's answers by the tier that answered them: realtime at the list price, a provider's batch API (native) or its flex tier at the batch price.</summary>
/// <param name="Realtime">Answers sent in realtime.</param>
/// <param name="Native">Answers of a provider's batch API.</param>
/// <param name="Flex">Answers of a provider's flex tier.</param>
/// <param name="SavedUsd">What native and flex answers saved against the list price, in US dollars.</param>
public sealed record BatchTiers(TierAnswers Realtime, TierAnswers Native, TierAnswers Flex, decimal SavedUsd)
{
    /// <summary>No answers by tier known.</summary>
    public static BatchTiers None { get; } = new(new TierAnswers(0, 0), new TierAnswers(0, 0), new TierAnswers(0, 0), 0);
}
