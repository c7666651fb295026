using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Batches;

/// <summary>What became of an input.</summary>
/// <param name="BatchId">The batch created for it.</param>
/// <param name="Accepted">True when every line was valid and the batch is in progress.</param>
/// <param name="Total">Valid requests read.</param>
/// <param name="Errors">Why the input was rejected, in line order; empty when accepted.</param>
/// <param name="MoreErrors">Problems found beyond those listed in <paramref name="Errors"/> (duplicate ids among them are not counted once the list is full).</param>
/// <param name="Sha256">The SHA-256 of the input, hex (of the part read, when rejected early).</param>
/// <param name="Bytes">Input bytes read.</param>
public sealed record ImportResult(string BatchId, bool Accepted, long Total, IReadOnlyList<InputError> Errors, long MoreErrors, string Sha256, long Bytes)
{
    /// <summary>True when there were more problems than are listed.</summary>
    public bool ErrorsTruncated => MoreErrors > 0;
}

/// <summary>
/// Streams a JSONL input into a new batch: line by line, in chunked transactions, never holding
/// more than one chunk in memory. Every line is checked (JSON, custom id, url, body, duplicates)
/// and every problem reported with its line number. The batch becomes dispatchable only when
/// the whole input was valid; otherwise its items are removed and nothing of it runs.
/// </summary>
public sealed class BatchImporter
{
    private readonly IBatchStore _store;
    private readonly ImportOptions _options;

    /// <summary>Creates an importer into <paramref name="store"/>; the options are copied.</summary>
    public BatchImporter(IBatchStore store, ImportOptions options)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _options = options.Validated();
    }

    /// <summary>Creates the batch <paramref name="batch"/> describes and reads <paramref name="input"/> into it.</summary>
    public async Task<ImportResult> ImportAsync(Stream input, NewBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(batch);
        await _store.CreateBatchAsync(batch, cancellationToken);
        try
        {
            return await ReadIntoAsync(input, batch.Id, batch.Endpoint, cancellationToken);
        }
        catch
        {
            // A half-read input must not stay behind as a batch.
            await _store.DeleteBatchAsync(batch.Id, CancellationToken.None);
            throw;
        }
    }

    /// <summary>
    /// Reads <paramref name="input"/> into a batch that exists and is being validated, and
    /// accepts or rejects it. Every line must name <paramref name="endpoint"/> when it is given.
    /// Interrupted, the batch stays validating with the items read so far: clear them with
    /// <see cref="IBatchStore.ClearItemsAsync"/> before reading again.
    /// </summary>
    public async Task<ImportResult> ReadIntoAsync(Stream input, string batchId, string? endpoint, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(batchId);
        using var hashing = new HashingReadStream(input);
        using var reader = new JsonlLineReader(hashing, _options.MaxLineBytes);
        var errors = new InputErrorList(_options.MaxErrors);
        var chunk = new List<ImportItem>(_options.ChunkSize);
        var total = 0L;
        (InputFormat Format, string Url, long Line)? first = null;

        // The store writes one chunk while the next is read and checked: at most two chunks in memory.
        List<ImportItem>? spare = null;
        (Task<IReadOnlyList<DuplicateCustomId>> Task, List<ImportItem> Items)? writing = null;

        async Task WrittenAsync()
        {
            if (writing is not { } pending)
            {
                return;
            }

            writing = null;
            foreach (var duplicate in await pending.Task)
            {
                errors.Add(InputError.Duplicate(duplicate.CustomId, duplicate.FirstLine, duplicate.Line));
            }

            pending.Items.Clear();
            spare = pending.Items;
        }

        async Task FlushAsync()
        {
            if (chunk.Count == 0)
            {
                return;
            }

            await WrittenAsync();
            var full = chunk;
            chunk = spare ?? new List<ImportItem>(_options.ChunkSize);
            spare = null;
            writing = (Task.Run(() => _store.AddItemsAsync(batchId, full, cancellationToken), cancellationToken), full);
        }

        async Task ReadLinesAsync()
        {
            LineKind kind;
            while ((kind = await reader.ReadAsync(cancellationToken)) != LineKind.End)
            {
                var line = reader.LineNumber;
                if (kind == LineKind.TooLong)
                {
                    errors.Add(new InputError(InputErrorCodes.LineTooLong, $"the line is longer than {_options.MaxLineBytes} bytes", line));
                    continue;
                }

                if (IsBlank(reader.Current.Span))
                {
                    continue;
                }

                if (InputLineParser.TryParse(reader.Current, out var parsed) is { } problem)
                {
                    errors.Add(new InputError(problem.Code, problem.Message, line));
                    continue;
                }

                first ??= (parsed.Format, endpoint ?? parsed.Url, line);
                if (Mismatch(parsed, first.Value, endpoint is not null) is { } mismatch)
                {
                    errors.Add(mismatch with { Line = line });
                    continue;
                }

                if (_options.ServesModel?.Invoke(parsed.Model) == false)
                {
                    errors.Add(new InputError(InputErrorCodes.ModelNotServed, $"no upstream of this server serves the model \"{parsed.Model}\"", line));
                    continue;
                }

                if (_options.ContextWindows?.Check(parsed.Model, parsed.Body.Span, line) is { } tooLong)
                {
                    errors.Add(tooLong);
                    continue;
                }

                total++;
                if (total > _options.MaxItems)
                {
                    errors.Add(new InputError(InputErrorCodes.TooManyTasks, $"the input holds more than {_options.MaxItems} requests", line));
                    return;
                }

                if (errors.Full)
                {
                    // The batch will be refused: later lines are only checked, to count their problems.
                    continue;
                }

                chunk.Add(new ImportItem(line, parsed.CustomId, parsed.Model, parsed.Body.ToArray()));
                if (chunk.Count >= _options.ChunkSize)
                {
                    await FlushAsync();
                }
            }
        }

        try
        {
            await ReadLinesAsync();
        }
        catch when (writing is { } pending)
        {
            // The batch is removed after a failure: its last chunk must be written (or have failed) first.
            await ((Task)pending.Task).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw;
        }

        await FlushAsync();
        await WrittenAsync();
        if (total == 0 && errors.IsEmpty)
        {
            errors.Add(new InputError(InputErrorCodes.EmptyFile, "the input holds no request", null));
        }

        var sha = hashing.HashHex();
        if (!errors.IsEmpty)
        {
            var (listed, more) = errors.Finish();
            // The stored errors (a refused batch's errors.data) end by saying how many were not listed.
            await _store.RejectBatchAsync(batchId, more > 0 ? [.. listed, InputError.Unlisted(more)] : listed, cancellationToken);
            return new ImportResult(batchId, false, total, listed, more, sha, hashing.BytesRead);
        }

        await _store.AcceptBatchAsync(batchId, new AcceptedInput(first!.Value.Format, first.Value.Url, total, sha, hashing.BytesRead), cancellationToken);
        return new ImportResult(batchId, true, total, [], 0, sha, hashing.BytesRead);
    }

    /// <summary>
    /// The format, url and model of the first request of <paramref name="input"/>, read without storing
    /// anything (to know where a batch will go before it is imported); null when the first
    /// line that is not blank is not a valid request (the import then says why). It needs no store:
    /// <c>run</c> reads it to choose its upstreams before the engine is built.
    /// </summary>
    public static async Task<(InputFormat Format, string Url, string Model)?> PeekAsync(Stream input, ImportOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(options);
        using var reader = new JsonlLineReader(input, options.MaxLineBytes);
        LineKind kind;
        while ((kind = await reader.ReadAsync(cancellationToken)) == LineKind.Line && IsBlank(reader.Current.Span))
        {
        }

        return kind == LineKind.Line && InputLineParser.TryParse(reader.Current, out var parsed) is null ? (parsed.Format, parsed.Url, parsed.Model) : null;
    }

    /// <summary>Why <paramref name="parsed"/> cannot join a batch whose first line is <paramref name="first"/>, or null when it can; the error has no line number.</summary>
    internal static InputError? Mismatch(in ParsedLine parsed, (InputFormat Format, string Url, long Line) first, bool endpointFixed)
    {
        if (parsed.Format != first.Format)
        {
            return new InputError(InputErrorCodes.FormatMismatch,
                $"this is an {Describe(parsed.Format)} line, but line {first.Line} is an {Describe(first.Format)} line; a batch holds one kind", null);
        }

        if (parsed.Url != first.Url)
        {
            var where = endpointFixed ? "the batch's endpoint" : $"the url of line {first.Line}";
            return new InputError(InputErrorCodes.UrlMismatch, $"url {parsed.Url} differs from {first.Url}, {where}; a batch sends every line to one url", null);
        }

        return null;
    }

    private static string Describe(InputFormat format) =>
        format == InputFormat.Anthropic ? "Anthropic (custom_id, params)" : "OpenAI (custom_id, method, url, body)";

    internal static bool IsBlank(ReadOnlySpan<byte> line) => line.IndexOfAnyExcept(" \t\r"u8) < 0;
}
