using System.Data.Common;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// What both stores share: the columns they read, how a row becomes a record, how errors and
/// metadata are kept as JSON (what outcomes add up to per batch is <see cref="CommitPlan"/>'s).
/// The stores differ in SQL and in how they reach their database, not in what a row means.
/// </summary>
internal static class StoreRows
{
    /// <summary>
    /// The batch a repeated idempotency key answers with: the first one, when it was made of the
    /// same body (or either hash is unknown).
    /// </summary>
    internal static string FirstOfKey(NewBatch batch, string firstId, string? firstSha256) =>
        firstSha256 is null || batch.BodySha256 is null || string.Equals(firstSha256, batch.BodySha256, StringComparison.Ordinal)
            ? firstId
            : throw new IdempotencyKeyReusedException(batch.IdempotencyKey!, firstId);

    internal const string BatchColumns =
        "id, format, endpoint, status, source, source_sha256, source_bytes, created_at, in_progress_at, completed_at, failed_at, total, succeeded, failed, " +
        "input_tokens, output_tokens, errors, priority, expires_at, cancelling_at, cancelled_at, expired_at, cancelled, expired, " +
        "owner, door, input_file_id, completion_window, metadata, model, output_file_id, error_file_id, finalizing_at, idempotency_key, cost_nanos, unpriced, budget_nanos, budget_exceeded, mode, " +
        "cutover_at, native_succeeded, native_cost_nanos, flex_succeeded, flex_cost_nanos, saved_nanos, cached, cache_saved_nanos, cache_use, " +
        "output_schema, max_reasks, valid_first, valid_reasked, invalid_output, reasked, reask_cost_nanos";

    internal const string FileColumns = "id, owner, filename, purpose, bytes, created_at, batch_id";

    internal static Page<T> ToPage<T>(List<T> rows, PageRequest page)
    {
        var hasMore = rows.Count > page.Limit;
        if (hasMore)
        {
            rows.RemoveAt(rows.Count - 1);
        }

        if (page.Before is not null)
        {
            rows.Reverse();
        }

        return new Page<T>(rows, hasMore);
    }

    internal const string NativeJobColumns = "id, batch_id, upstream, provider_batch_id, status, cancel_requested, created_at";

    internal const string ResultColumns = """
        SELECT i.line, i.custom_id, i.state, r.item_id, r.status_code, r.request_id, r.body,
            r.error_code, r.error_message, r.input_tokens, r.output_tokens, r.cached_tokens, r.cost_nanos, r.cached
        FROM items i LEFT JOIN results r ON r.item_id = i.id
        """;

    internal static ItemResult ReadResult(DbDataReader reader)
    {
        var result = reader.IsDBNull(3) ? null : new AttemptResult
        {
            StatusCode = reader.IsDBNull(4) ? null : reader.GetInt32(4),
            RequestId = reader.IsDBNull(5) ? null : reader.GetString(5),
            Body = reader.IsDBNull(6) ? null : (byte[])reader.GetValue(6),
            ErrorCode = reader.IsDBNull(7) ? null : reader.GetString(7),
            ErrorMessage = reader.IsDBNull(8) ? null : reader.GetString(8),
            InputTokens = reader.GetInt32(9),
            OutputTokens = reader.GetInt32(10),
            CachedTokens = reader.GetInt32(11),
            // A kept answer costs nothing this time; its row holds what it cost when bought: what it saves.
            CostNanos = reader.GetInt32(13) != 0 ? 0 : reader.GetInt64(12),
            SavedNanos = reader.GetInt32(13) != 0 ? reader.GetInt64(12) : 0,
            Cached = reader.GetInt32(13) != 0,
        };
        return new ItemResult(reader.GetInt64(0), reader.GetString(1), (ItemState)reader.GetInt32(2), result);
    }

    internal static BatchRecord ReadBatch(DbDataReader r) =>
        new()
        {
            Id = r.GetString(0),
            Format = (InputFormat)r.GetInt32(1),
            Endpoint = r.IsDBNull(2) ? null : r.GetString(2),
            Status = StoredStatus.Parse(r.GetString(3)),
            Source = r.IsDBNull(4) ? null : r.GetString(4),
            SourceSha256 = r.IsDBNull(5) ? null : r.GetString(5),
            SourceBytes = r.IsDBNull(6) ? null : r.GetInt64(6),
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(7)),
            InProgressAt = ReadTime(r, 8),
            CompletedAt = ReadTime(r, 9),
            FailedAt = ReadTime(r, 10),
            Total = r.GetInt64(11),
            Succeeded = r.GetInt64(12),
            Failed = r.GetInt64(13),
            InputTokens = r.GetInt64(14),
            OutputTokens = r.GetInt64(15),
            Errors = r.IsDBNull(16) ? [] : DeserializeErrors(r.GetString(16)),
            Priority = (BatchPriority)r.GetInt32(17),
            ExpiresAt = ReadTime(r, 18),
            CancellingAt = ReadTime(r, 19),
            CancelledAt = ReadTime(r, 20),
            ExpiredAt = ReadTime(r, 21),
            Cancelled = r.GetInt64(22),
            Expired = r.GetInt64(23),
            Owner = r.IsDBNull(24) ? null : r.GetString(24),
            Door = (BatchDoor)r.GetInt32(25),
            InputFileId = r.IsDBNull(26) ? null : r.GetString(26),
            CompletionWindow = r.IsDBNull(27) ? null : r.GetString(27),
            Metadata = r.IsDBNull(28) ? new Dictionary<string, string>() : DeserializeMetadata(r.GetString(28)),
            Model = r.IsDBNull(29) ? null : r.GetString(29),
            OutputFileId = r.IsDBNull(30) ? null : r.GetString(30),
            ErrorFileId = r.IsDBNull(31) ? null : r.GetString(31),
            FinalizingAt = ReadTime(r, 32),
            IdempotencyKey = r.IsDBNull(33) ? null : r.GetString(33),
            CostNanos = r.GetInt64(34),
            Unpriced = r.GetInt64(35),
            BudgetNanos = r.IsDBNull(36) ? null : r.GetInt64(36),
            BudgetExceeded = r.GetInt64(37),
            Mode = (BatchMode)r.GetInt32(38),
            CutOverAt = ReadTime(r, 39),
            Tiers = new TierTally(r.GetInt64(40), r.GetInt64(41), r.GetInt64(42), r.GetInt64(43), r.GetInt64(44)),
            Cached = r.GetInt64(45),
            CacheSavedNanos = r.GetInt64(46),
            Cache = (CacheUse)r.GetInt32(47),
            OutputSchema = r.IsDBNull(48) ? null : r.GetString(48),
            MaxReasks = r.IsDBNull(49) ? null : r.GetInt32(49),
            Output = new OutputTally(r.GetInt64(50), r.GetInt64(51), r.GetInt64(52), r.GetInt64(53), r.GetInt64(54)),
        };

    internal static DateTimeOffset? ReadTime(DbDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));

    internal static string SerializeErrors(IReadOnlyList<InputError> errors)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options))
        {
            json.WriteStartArray();
            foreach (var error in errors)
            {
                json.WriteStartObject();
                json.WriteString("code", error.Code);
                json.WriteString("message", error.Message);
                if (error.Line is { } line)
                {
                    json.WriteNumber("line", line);
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    internal static string SerializeMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options))
        {
            json.WriteStartObject();
            foreach (var (key, value) in metadata)
            {
                json.WriteString(key, value);
            }

            json.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    internal static Dictionary<string, string> DeserializeMetadata(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
    }

    internal static List<InputError> DeserializeErrors(string json)
    {
        using var document = JsonDocument.Parse(json);
        return [.. document.RootElement.EnumerateArray().Select(e => new InputError(
            e.GetProperty("code").GetString()!,
            e.GetProperty("message").GetString()!,
            e.TryGetProperty("line", out var line) ? line.GetInt64() : null))];
    }

    internal static FileRecord ReadFile(DbDataReader r) =>
        new()
        {
            Id = r.GetString(0),
            Owner = r.IsDBNull(1) ? null : r.GetString(1),
            Filename = r.GetString(2),
            Purpose = r.GetString(3),
            Bytes = r.GetInt64(4),
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)),
            BatchId = r.IsDBNull(6) ? null : r.GetString(6),
        };

    internal static NativeJob ReadNativeJob(DbDataReader r) =>
        new()
        {
            Id = r.GetInt64(0),
            BatchId = r.GetString(1),
            Upstream = r.GetString(2),
            ProviderBatchId = r.GetString(3),
            Status = (NativeJobStatus)r.GetInt32(4),
            CancelRequested = r.GetInt32(5) != 0,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(6)),
        };

    /// <summary>
    /// Streams rows in line order, a page at a time: the first page leaves out <paramref name="skip"/>
    /// rows, each next one starts after the line of the last row read, and a short page is the last.
    /// </summary>
    internal static async IAsyncEnumerable<T> PagedAsync<T>(
        Func<long, long, CancellationToken, Task<List<T>>> readPage, Func<T, long> lineOf, int pageSize, long skip, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var after = 0L;
        var offset = skip;
        while (true)
        {
            var page = await readPage(after, offset, cancellationToken);
            offset = 0;
            foreach (var row in page)
            {
                yield return row;
            }

            if (page.Count < pageSize)
            {
                yield break;
            }

            after = lineOf(page[^1]);
        }
    }

    /// <summary>A stored file's record, as it is when stored at <paramref name="createdAt"/> with <paramref name="bytes"/>.</summary>
    internal static FileRecord NewFileRecord(NewFile file, long bytes, DateTimeOffset createdAt) =>
        new()
        {
            Id = file.Id,
            Owner = file.Owner,
            Filename = file.Filename,
            Purpose = file.Purpose,
            Bytes = bytes,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(createdAt.ToUnixTimeMilliseconds()),
            BatchId = file.BatchId,
        };

    /// <summary>A native job as it is when recorded.</summary>
    internal static NativeJob NewNativeJob(long id, string batchId, string upstream, string providerBatchId, DateTimeOffset now) =>
        new()
        {
            Id = id,
            BatchId = batchId,
            Upstream = upstream,
            ProviderBatchId = providerBatchId,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(now.ToUnixTimeMilliseconds()),
        };

    internal static ActivityBucket ReadBucket(DbDataReader r, long width) =>
        new(DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(0) * width), r.GetInt64(1), r.IsDBNull(2) ? 0 : r.GetInt64(2), r.IsDBNull(3) ? 0 : r.GetInt64(3));

    internal static TenantUsage ReadUsage(DbDataReader r) => new(r.GetInt64(0), Math.Max(0, r.GetInt64(1)));
}
