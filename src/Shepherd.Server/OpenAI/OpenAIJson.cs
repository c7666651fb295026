using System.Text.Json;
using Shepherd.Engine.Model;
using Shepherd.Server.Http;

namespace Shepherd.Server.OpenAI;

/// <summary>The objects of the OpenAI door, field for field as the official SDKs read them.</summary>
internal static class OpenAIJson
{
    public static void WriteFile(Utf8JsonWriter json, FileRecord file)
    {
        json.WriteStartObject();
        json.WriteString("id", file.Id);
        json.WriteString("object", "file");
        json.WriteNumber("bytes", file.Bytes);
        json.WriteNumber("created_at", file.CreatedAt.ToUnixTimeSeconds());
        json.WriteString("filename", file.Filename);
        json.WriteString("purpose", file.Purpose);
        json.WriteString("status", "processed");
        json.WriteNull("status_details");
        json.WriteNull("expires_at");
        json.WriteEndObject();
    }

    /// <summary>
    /// The Batch object, with Shepherd's additions (<c>batch_id</c>, <c>progress</c> and the rest,
    /// and the seed-compatible <c>error</c>) after OpenAI's fields, and, when given, the
    /// <paramref name="lanes"/> that serve it and its <paramref name="results"/>.
    /// </summary>
    public static void WriteBatch(Utf8JsonWriter json, BatchRecord batch, DateTimeOffset now, IReadOnlyList<Engine.Dispatch.LaneState>? lanes = null, SeedResults? results = null)
    {
        json.WriteStartObject();
        json.WriteString("id", batch.Id);
        json.WriteString("object", "batch");
        json.WriteString("endpoint", batch.Endpoint);
        json.WriteString("model", batch.Model);
        WriteErrors(json, batch.Errors);
        json.WriteString("input_file_id", batch.InputFileId);
        json.WriteString("completion_window", batch.CompletionWindow);
        json.WriteString("status", BatchStatusWords.Of(batch));
        json.WriteString("output_file_id", batch.OutputFileId);
        json.WriteString("error_file_id", batch.ErrorFileId);
        WriteTime(json, "created_at", batch.CreatedAt);
        WriteTime(json, "in_progress_at", batch.InProgressAt);
        WriteTime(json, "expires_at", batch.ExpiresAt);
        WriteTime(json, "finalizing_at", batch.CancellingAt is null ? batch.FinalizingAt : null);
        WriteTime(json, "completed_at", batch.CompletedAt);
        WriteTime(json, "failed_at", batch.FailedAt);
        WriteTime(json, "expired_at", batch.Status == BatchStatus.Expired ? batch.ExpiredAt : null);
        WriteTime(json, "cancelling_at", batch.CancellingAt);
        WriteTime(json, "cancelled_at", batch.CancelledAt);
        json.WriteStartObject("request_counts");
        json.WriteNumber("total", batch.Total);
        json.WriteNumber("completed", batch.Succeeded);
        json.WriteNumber("failed", batch.Failed + batch.Cancelled + batch.Expired);
        json.WriteEndObject();
        json.WriteStartObject("usage");
        json.WriteNumber("input_tokens", batch.InputTokens);
        json.WriteStartObject("input_tokens_details");
        json.WriteNumber("cached_tokens", 0);
        json.WriteEndObject();
        json.WriteNumber("output_tokens", batch.OutputTokens);
        json.WriteStartObject("output_tokens_details");
        json.WriteNumber("reasoning_tokens", 0);
        json.WriteEndObject();
        json.WriteNumber("total_tokens", batch.InputTokens + batch.OutputTokens);
        json.WriteEndObject();
        if (batch.Metadata.Count == 0)
        {
            json.WriteNull("metadata");
        }
        else
        {
            json.WriteStartObject("metadata");
            foreach (var (key, value) in batch.Metadata)
            {
                json.WriteString(key, value);
            }

            json.WriteEndObject();
        }

        var counts = BatchCounts.Of(batch);
        json.WriteString("batch_id", batch.Id);
        json.WriteNumber("progress", counts.Percent);
        json.WriteNumber("total_items", batch.Total);
        json.WriteNumber("cost_usd", counts.CostUsd);
        json.WriteNumber("unpriced_requests", batch.Unpriced);
        counts.WriteBudget(json);
        counts.WriteTiers(json);
        counts.WriteOutput(json);
        WriteTime(json, "cutover_at", batch.CutOverAt);
        // request_counts folds cancelled and expired requests into failed, as OpenAI's does; these say which.
        json.WriteStartObject("outcomes");
        json.WriteNumber("succeeded", batch.Succeeded);
        json.WriteNumber("failed", batch.Failed);
        json.WriteNumber("cancelled", batch.Cancelled);
        json.WriteNumber("expired", batch.Expired);
        json.WriteNumber("pending", batch.Total - batch.Finished);
        json.WriteEndObject();
        var started = batch.InProgressAt ?? batch.CreatedAt;
        var ended = batch.EndedAt ?? now;
        json.WriteNumber("duration_seconds", Math.Round(Math.Max(0, (ended - started).TotalSeconds), 3));
        json.WriteString("priority", Words.Priority(batch.Priority));
        json.WriteString("mode", BatchModeWords.Of(batch.Mode));
        json.WriteString("error", FailureText(batch));
        if (lanes is not null)
        {
            json.WriteStartArray("lanes");
            foreach (var lane in lanes)
            {
                LaneJson.Write(json, lane);
            }

            json.WriteEndArray();
        }

        results?.Write(json);
        json.WriteEndObject();
    }

    /// <summary>
    /// Why a failed batch failed, in one line (its first input problems, as <c>errors</c> lists
    /// them all); null for a batch that has not failed.
    /// </summary>
    private static string? FailureText(BatchRecord batch)
    {
        const int shown = 5;
        if (batch.Status != BatchStatus.Failed)
        {
            return null;
        }

        if (batch.Errors.Count == 0)
        {
            return "The batch failed.";
        }

        var problems = batch.Errors.Take(shown).Select(e => e.Line is { } line ? $"line {line}: {e.Code}: {e.Message}" : $"{e.Code}: {e.Message}");
        var more = batch.Errors.Count > shown ? $"; and {batch.Errors.Count - shown} more (see errors)" : "";
        return $"The input was refused, and nothing was sent: {string.Join("; ", problems)}{more}";
    }

    /// <summary>The list envelope: all five keys, always.</summary>
    public static void WriteList<T>(Utf8JsonWriter json, Page<T> page, Func<T, string> id, Action<Utf8JsonWriter, T> write)
    {
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (var item in page.Items)
        {
            write(json, item);
        }

        json.WriteEndArray();
        json.WriteString("first_id", page.Items.Count > 0 ? id(page.Items[0]) : null);
        json.WriteString("last_id", page.Items.Count > 0 ? id(page.Items[^1]) : null);
        json.WriteBoolean("has_more", page.HasMore);
        json.WriteEndObject();
    }

    private static void WriteErrors(Utf8JsonWriter json, IReadOnlyList<Engine.Formats.InputError> errors)
    {
        if (errors.Count == 0)
        {
            json.WriteNull("errors");
            return;
        }

        json.WriteStartObject("errors");
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (var error in errors)
        {
            error.WriteTo(json, withParam: true);
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>A time as Unix seconds, or null.</summary>
    internal static void WriteTime(Utf8JsonWriter json, string name, DateTimeOffset? at)
    {
        if (at is { } time)
        {
            json.WriteNumber(name, time.ToUnixTimeSeconds());
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
