using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Shepherd.Client.Http;

namespace Shepherd.Client.Backends;

/// <summary>Reads the wire objects the batch APIs answer with.</summary>
internal static class Wire
{
    private const int ListPageSize = 100;

    /// <summary>
    /// Every item of a listing, page after page: <c>?limit=</c> pages of 100 from
    /// <paramref name="path"/>, the next asked for with <paramref name="afterParameter"/> set to the
    /// page's <c>last_id</c> until <c>has_more</c> is no longer <c>true</c>. Both batch APIs page
    /// this way and differ only in that parameter's name.
    /// </summary>
    public static async IAsyncEnumerable<T> PagesAsync<T>(ApiPipeline pipeline, string path, string afterParameter, Func<JsonElement, T> read, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string? after = null;
        while (true)
        {
            var query = $"{path}?limit={ListPageSize}" + (after is null ? "" : $"&{afterParameter}=" + Uri.EscapeDataString(after));
            var page = (await pipeline.SendJsonAsync(() => pipeline.Request(HttpMethod.Get, query), cancellationToken)).Json;
            foreach (var item in page.GetProperty("data").EnumerateArray())
            {
                yield return read(item);
            }

            after = String(page, "last_id");
            if (!page.TryGetProperty("has_more", out var more) || more.ValueKind != JsonValueKind.True || after is null)
            {
                yield break;
            }
        }
    }

    /// <summary>The OpenAI Batch object of <paramref name="answer"/>, with the HTTP answer it came in.</summary>
    public static Batch OpenAIBatch(JsonAnswer answer) => OpenAIBatch(answer.Json) with { Response = answer.Response };

    /// <summary>The Anthropic MessageBatch of <paramref name="answer"/>, with the HTTP answer it came in.</summary>
    public static Batch AnthropicBatch(JsonAnswer answer) => AnthropicBatch(answer.Json) with { Response = answer.Response };

    /// <summary>An OpenAI Batch object (with Shepherd's additions where present).</summary>
    public static Batch OpenAIBatch(JsonElement json)
    {
        var counts = json.TryGetProperty("request_counts", out var c) && c.ValueKind == JsonValueKind.Object ? c : default;
        var usage = json.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object ? u : default;
        var outcomes = json.TryGetProperty("outcomes", out var o) && o.ValueKind == JsonValueKind.Object ? o : default;
        return new Batch
        {
            Id = String(json, "id") ?? throw new JsonException("A batch without an id."),
            Status = BatchStatusNames.FromApiName(String(json, "status")) ?? BatchStatus.Unknown,
            StatusName = String(json, "status") ?? "",
            Raw = json.Clone(),
            Endpoint = String(json, "endpoint"),
            Model = String(json, "model"),
            Total = Long(counts, "total"),
            Succeeded = Long(counts, "completed"),
            Failed = Long(counts, "failed"),
            Cancelled = Long(outcomes, "cancelled"),
            Expired = Long(outcomes, "expired"),
            InputTokens = Long(usage, "input_tokens"),
            OutputTokens = Long(usage, "output_tokens"),
            CostUsd = Decimal(json, "cost_usd"),
            CreatedAt = UnixTime(json, "created_at") ?? DateTimeOffset.UnixEpoch,
            InProgressAt = UnixTime(json, "in_progress_at"),
            EndedAt = UnixTime(json, "completed_at") ?? UnixTime(json, "failed_at") ?? UnixTime(json, "cancelled_at") ?? UnixTime(json, "expired_at"),
            ExpiresAt = UnixTime(json, "expires_at"),
            InputFileId = String(json, "input_file_id"),
            OutputFileId = String(json, "output_file_id"),
            ErrorFileId = String(json, "error_file_id"),
            Metadata = json.TryGetProperty("metadata", out var metadata) && metadata.ValueKind == JsonValueKind.Object
                ? metadata.EnumerateObject().Where(p => p.Value.ValueKind == JsonValueKind.String).ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal)
                : new Dictionary<string, string>(),
            Errors = json.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Object && errors.TryGetProperty("data", out var data)
                ? [.. data.EnumerateArray().Select(e => new BatchError(String(e, "code") ?? "error", String(e, "message") ?? "", e.TryGetProperty("line", out var line) && line.ValueKind == JsonValueKind.Number ? line.GetInt64() : null))]
                : [],
            BudgetUsd = json.TryGetProperty("budget_usd", out var budget) && budget.ValueKind == JsonValueKind.Number ? budget.GetDecimal() : null,
            BudgetExceededRequests = Long(json, "budget_exceeded_requests"),
            Tiers = json.TryGetProperty("tiers", out var tiers) && tiers.ValueKind == JsonValueKind.Object
                ? new BatchTiers(Tier(tiers, "realtime"), Tier(tiers, "native"), Tier(tiers, "flex"), Decimal(json, "saved_usd"))
                : BatchTiers.None,
            Cached = Long(json, "cached"),
            CacheSavedUsd = Decimal(json, "cache_saved_usd"),
            Output = json.TryGetProperty("output_checks", out var output) && output.ValueKind == JsonValueKind.Object
                ? new BatchOutputChecks(Long(output, "valid_first"), Long(output, "valid_reasked"), Long(output, "invalid"), Long(output, "reasked"), Decimal(output, "reask_cost_usd"))
                : BatchOutputChecks.None,
            Mode = BatchModeNames.FromApiName(String(json, "mode")),
            Lanes = json.TryGetProperty("lanes", out var lanes) && lanes.ValueKind == JsonValueKind.Array
                ? [.. lanes.EnumerateArray().Where(l => l.ValueKind == JsonValueKind.Object).Select(l => new BatchLane(
                    String(l, "upstream") ?? "", String(l, "model") ?? "", String(l, "state") ?? "sending", UnixTime(l, "since"), String(l, "reason"), UnixTime(l, "next_probe_at")))]
                : [],
        };
    }

    /// <summary>A number in US dollars, 0 when absent.</summary>
    private static decimal Decimal(JsonElement json, string name) =>
        json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetDecimal() : 0;

    /// <summary>One tier's answers and their cost, of a Shepherd batch's <c>tiers</c>.</summary>
    private static TierAnswers Tier(JsonElement tiers, string name) =>
        tiers.TryGetProperty(name, out var tier) && tier.ValueKind == JsonValueKind.Object
            ? new TierAnswers(Long(tier, "requests"), Decimal(tier, "cost_usd"))
            : new TierAnswers(0, 0);

    /// <summary>An OpenAI output or error line; a <c>status</c> field (Shepherd's) is taken as given.</summary>
    public static BatchResult OpenAIResult(JsonElement line)
    {
        var response = line.TryGetProperty("response", out var r) && r.ValueKind == JsonValueKind.Object ? r : default;
        var statusCode = response.ValueKind == JsonValueKind.Object && response.TryGetProperty("status_code", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetInt32() : (int?)null;
        var body = response.ValueKind == JsonValueKind.Object && response.TryGetProperty("body", out var b) ? b : default;
        var error = line.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object ? e : default;
        var status = String(line, "status") switch
        {
            "succeeded" => ResultStatus.Succeeded,
            "failed" => ResultStatus.Failed,
            "cancelled" => ResultStatus.Cancelled,
            "expired" => ResultStatus.Expired,
            "pending" => ResultStatus.Pending,
            _ => statusCode is >= 200 and < 300 ? ResultStatus.Succeeded
                : String(error, "code") == "batch_expired" ? ResultStatus.Expired
                : String(error, "code") == "batch_cancelled" ? ResultStatus.Cancelled
                : ResultStatus.Failed,
        };
        ResultError? failure = null;
        if (status is not (ResultStatus.Succeeded or ResultStatus.Pending))
        {
            var envelope = body.ValueKind == JsonValueKind.Object && body.TryGetProperty("error", out var inner) && inner.ValueKind == JsonValueKind.Object ? inner : error;
            failure = new ResultError(String(envelope, "code") ?? String(envelope, "type"), String(envelope, "message") ?? $"HTTP {statusCode}", statusCode);
        }

        var succeeded = status == ResultStatus.Succeeded && body.ValueKind == JsonValueKind.Object;
        return new BatchResult
        {
            CustomId = String(line, "custom_id") ?? throw new JsonException("A result line without a custom_id."),
            Status = status,
            Answer = succeeded ? body.Clone() : null,
            Text = succeeded ? TextOf(body) : null,
            Usage = succeeded ? UsageOf(body) : null,
            CostUsd = line.TryGetProperty("cost_usd", out var cost) && cost.ValueKind == JsonValueKind.Number ? cost.GetDecimal() : 0,
            Error = failure,
            Line = line.Clone(),
        };
    }

    /// <summary>The answer of a call that could wait, asked for as <paramref name="callId"/> (the server names it again in its answer).</summary>
    public static CallAnswer CallAnswer(JsonAnswer answer, string callId) => new()
    {
        CallId = answer.Response.Headers.GetValueOrDefault(ApiPipeline.CallIdHeader) ?? callId,
        Body = answer.Json,
        Text = answer.Json.ValueKind == JsonValueKind.Object ? TextOf(answer.Json) : null,
        Usage = answer.Json.ValueKind == JsonValueKind.Object ? UsageOf(answer.Json) : null,
        Response = answer.Response,
    };

    /// <summary>The text of a chat, completions, responses or messages answer.</summary>
    public static string? TextOf(JsonElement body)
    {
        if (body.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0)
        {
            var choice = choices[0];
            return choice.TryGetProperty("message", out var message) ? String(message, "content") : String(choice, "text");
        }

        if (body.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.Array)
        {
            return string.Concat(content.EnumerateArray().Where(c => String(c, "type") == "text").Select(c => String(c, "text")));
        }

        if (body.TryGetProperty("output", out var output) && output.ValueKind == JsonValueKind.Array)
        {
            return string.Concat(output.EnumerateArray()
                .Where(o => o.TryGetProperty("content", out var parts) && parts.ValueKind == JsonValueKind.Array)
                .SelectMany(o => o.GetProperty("content").EnumerateArray())
                .Where(p => String(p, "type") == "output_text")
                .Select(p => String(p, "text")));
        }

        return null;
    }

    /// <summary>Tokens of an answer: OpenAI's prompt/completion or the input/output of responses and messages.</summary>
    public static ResultUsage? UsageOf(JsonElement body) =>
        body.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object
            ? new ResultUsage(Long(usage, "prompt_tokens") + Long(usage, "input_tokens"), Long(usage, "completion_tokens") + Long(usage, "output_tokens"))
            : null;

    public static string? String(JsonElement json, string name) =>
        json.ValueKind == JsonValueKind.Object && json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    public static long Long(JsonElement json, string name) =>
        json.ValueKind == JsonValueKind.Object && json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetInt64() : 0;

    private static DateTimeOffset? UnixTime(JsonElement json, string name) =>
        json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number
            ? DateTimeOffset.FromUnixTimeSeconds(value.GetInt64())
            : null;

    /// <summary>An RFC 3339 time (Anthropic's), or null.</summary>
    public static DateTimeOffset? Rfc3339(JsonElement json, string name) =>
        String(json, name) is { } text && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : null;

    /// <summary>
    /// An Anthropic MessageBatch. Its three processing states become: <c>in_progress</c> →
    /// <see cref="BatchStatus.InProgress"/>; <c>canceling</c> → <see cref="BatchStatus.Cancelling"/>;
    /// <c>ended</c> → <see cref="BatchStatus.Cancelled"/> when a cancel was initiated, else
    /// <see cref="BatchStatus.Expired"/> when requests expired (only the 24-hour window expires
    /// them, so the batch ran out of time, as the OpenAI door would say), else
    /// <see cref="BatchStatus.Completed"/>. Errored, canceled and expired requests all count as
    /// <see cref="Batch.Failed"/>. A MessageBatch names no model, tokens, cost, metadata, nor when
    /// processing began: those stay empty.
    /// </summary>
    public static Batch AnthropicBatch(JsonElement json)
    {
        var counts = json.TryGetProperty("request_counts", out var c) && c.ValueKind == JsonValueKind.Object ? c : default;
        var (succeeded, errored, canceled, expired) = (Long(counts, "succeeded"), Long(counts, "errored"), Long(counts, "canceled"), Long(counts, "expired"));
        return new Batch
        {
            Id = String(json, "id") ?? throw new JsonException("A message batch without an id."),
            Status = String(json, "processing_status") switch
            {
                "in_progress" => BatchStatus.InProgress,
                "canceling" => BatchStatus.Cancelling,
                "ended" when Rfc3339(json, "cancel_initiated_at") is not null => BatchStatus.Cancelled,
                "ended" when expired > 0 => BatchStatus.Expired,
                "ended" => BatchStatus.Completed,
                _ => BatchStatus.Unknown,
            },
            StatusName = String(json, "processing_status") ?? "",
            Raw = json.Clone(),
            Endpoint = "/v1/messages",
            Total = Long(counts, "processing") + succeeded + errored + canceled + expired,
            Succeeded = succeeded,
            Failed = errored + canceled + expired,
            Cancelled = canceled,
            Expired = expired,
            CreatedAt = Rfc3339(json, "created_at") ?? DateTimeOffset.UnixEpoch,
            EndedAt = Rfc3339(json, "ended_at"),
            ExpiresAt = Rfc3339(json, "expires_at"),
        };
    }

    /// <summary>
    /// An Anthropic result line, <c>{"custom_id","result":{"type",…}}</c>: <c>succeeded</c> with its
    /// message, <c>errored</c> with <c>error.error {type, message}</c>, <c>canceled</c> or <c>expired</c>.
    /// </summary>
    public static BatchResult AnthropicResult(JsonElement line)
    {
        var result = line.TryGetProperty("result", out var r) && r.ValueKind == JsonValueKind.Object ? r : default;
        var message = result.ValueKind == JsonValueKind.Object && result.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.Object ? m : default;
        var status = String(result, "type") switch
        {
            "succeeded" => ResultStatus.Succeeded,
            "errored" => ResultStatus.Failed,
            "canceled" => ResultStatus.Cancelled,
            "expired" => ResultStatus.Expired,
            var other => throw new JsonException($"Unknown result type '{other}'."),
        };
        var succeeded = status == ResultStatus.Succeeded && message.ValueKind == JsonValueKind.Object;
        return new BatchResult
        {
            CustomId = String(line, "custom_id") ?? throw new JsonException("A result line without a custom_id."),
            Status = status,
            Answer = succeeded ? message.Clone() : null,
            Text = succeeded ? TextOf(message) : null,
            Usage = succeeded ? UsageOf(message) : null,
            // The same codes the OpenAI dialect gives requests that were never sent.
            Error = status switch
            {
                ResultStatus.Failed => AnthropicError(result),
                ResultStatus.Cancelled => new ResultError("batch_cancelled", "The batch was canceled before this request was processed.", null),
                ResultStatus.Expired => new ResultError("batch_expired", "The batch's 24-hour window ended before this request was processed.", null),
                _ => null,
            },
            Line = line.Clone(),
        };
    }

    /// <summary>
    /// The error of an errored result: <c>{"type":"error","error":{"type","message"}}</c>. No HTTP
    /// status: the error type does not say whether the provider answered at all.
    /// </summary>
    private static ResultError AnthropicError(JsonElement result)
    {
        var envelope = result.ValueKind == JsonValueKind.Object && result.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object ? e : default;
        var error = envelope.ValueKind == JsonValueKind.Object && envelope.TryGetProperty("error", out var inner) && inner.ValueKind == JsonValueKind.Object ? inner : envelope;
        return new ResultError(String(error, "type"), String(error, "message") ?? "The request failed without a message.", null);
    }
}
