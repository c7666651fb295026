namespace Shepherd.Simulator.Batches;

/// <summary>A file of the OpenAI files API: an uploaded batch input, or a batch's output or error file.</summary>
/// <param name="Id">The file id.</param>
/// <param name="Filename">The name it was uploaded or written under.</param>
/// <param name="Purpose"><c>batch</c> for an input, <c>batch_output</c> for what a batch wrote.</param>
/// <param name="CreatedAt">When it was uploaded or written.</param>
/// <param name="Content">Its bytes.</param>
internal sealed record SimulatedFile(string Id, string Filename, string Purpose, DateTimeOffset CreatedAt, byte[] Content);

/// <summary>A page of a listing of jobs, newest first.</summary>
/// <param name="Items">The jobs of the page.</param>
/// <param name="HasMore">True when more jobs follow in the direction paged.</param>
internal sealed record BatchPage(IReadOnlyList<SimulatedBatch> Items, bool HasMore);

/// <summary>
/// The files and batch jobs of a simulator, and the counters of what the jobs did. A job is
/// settled (its lines counted, an OpenAI job's files written) the first time it is looked at
/// after it has ended; the counters settle every job first, so they are right at any moment.
/// Thread-safe: every call holds one lock.
/// </summary>
internal sealed class BatchBook(TimeProvider time, Action<ulong> executed)
{
    private readonly object _gate = new();
    private readonly Dictionary<string, SimulatedFile> _files = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SimulatedBatch> _byId = new(StringComparer.Ordinal);
    private readonly List<SimulatedBatch> _batches = [];
    private readonly List<SimulatedBatch> _unsettled = [];
    private long _ids;
    private long _succeeded;
    private long _errored;
    private long _expired;
    private long _cancelled;

    public DateTimeOffset Now => time.GetUtcNow();

    /// <summary>A new id with <paramref name="prefix"/>: unique in this simulator, and not in the order made.</summary>
    public string NewId(string prefix)
    {
        // Multiplying by an odd constant permutes the counter: ids unique, yet not telling the order.
        var n = (ulong)Interlocked.Increment(ref _ids) * 0x9E3779B97F4A7C15UL;
        return $"{prefix}{n:x16}";
    }

    public void Add(SimulatedFile file)
    {
        lock (_gate)
        {
            _files.Add(file.Id, file);
        }
    }

    public SimulatedFile? File(string id)
    {
        lock (_gate)
        {
            return _files.GetValueOrDefault(id);
        }
    }

    public void Add(SimulatedBatch batch)
    {
        lock (_gate)
        {
            _byId.Add(batch.Id, batch);
            _batches.Add(batch);
            _unsettled.Add(batch);
        }
    }

    /// <summary>
    /// Runs <paramref name="read"/> on the job <paramref name="id"/> of <paramref name="dialect"/>
    /// (null when there is none), settled as of now, under the lock: a job changes only under it.
    /// </summary>
    public T Read<T>(string id, BatchDialect dialect, Func<SimulatedBatch?, DateTimeOffset, T> read) => Look(id, dialect, cancel: false, read);

    /// <summary>
    /// Asks the job <paramref name="id"/> to cancel (an ended job, or one cancelled before, stays
    /// as it is), then runs <paramref name="read"/> on it as <see cref="Read"/> does.
    /// </summary>
    public T Cancel<T>(string id, BatchDialect dialect, Func<SimulatedBatch?, DateTimeOffset, T> read) => Look(id, dialect, cancel: true, read);

    private T Look<T>(string id, BatchDialect dialect, bool cancel, Func<SimulatedBatch?, DateTimeOffset, T> read)
    {
        lock (_gate)
        {
            var now = Now;
            if (!_byId.TryGetValue(id, out var batch) || batch.Dialect != dialect)
            {
                return read(null, now);
            }

            if (cancel)
            {
                batch.Cancel(now);
            }

            Settle(batch, now);
            return read(batch, now);
        }
    }

    /// <summary>
    /// A page of the jobs of <paramref name="dialect"/>, newest first: after the job <paramref name="afterId"/>,
    /// or the <paramref name="limit"/> just before the job <paramref name="beforeId"/>, or the first;
    /// null when the job named is not one of them. <paramref name="write"/> runs on it under the lock.
    /// </summary>
    public T? Page<T>(BatchDialect dialect, string? afterId, string? beforeId, int limit, Func<BatchPage, DateTimeOffset, T> write)
        where T : class
    {
        lock (_gate)
        {
            var now = Now;
            var newestFirst = _batches.Where(b => b.Dialect == dialect).Reverse().ToList();
            int start, end;
            if ((afterId ?? beforeId) is { } cursor)
            {
                var at = newestFirst.FindIndex(b => b.Id == cursor);
                if (at < 0)
                {
                    return null;
                }

                (start, end) = afterId is not null ? (at + 1, Math.Min(newestFirst.Count, at + 1 + limit)) : (Math.Max(0, at - limit), at);
            }
            else
            {
                (start, end) = (0, Math.Min(newestFirst.Count, limit));
            }

            var items = newestFirst.GetRange(start, end - start);
            foreach (var batch in items)
            {
                Settle(batch, now);
            }

            return write(new BatchPage(items, beforeId is not null ? start > 0 : end < newestFirst.Count), now);
        }
    }

    /// <summary>The counters, every ended job settled first.</summary>
    public BatchStats Stats()
    {
        lock (_gate)
        {
            var now = Now;
            foreach (var batch in _unsettled.ToList())
            {
                Settle(batch, now);
            }

            return new BatchStats(_batches.Count, _succeeded, _errored, _expired, _cancelled);
        }
    }

    /// <summary>Once a job has ended: counts its lines (successes as executions), and writes an OpenAI job's output and error files.</summary>
    private void Settle(SimulatedBatch batch, DateTimeOffset now)
    {
        if (batch.Settled || !batch.HasEnded(now))
        {
            return;
        }

        batch.Settled = true;
        _unsettled.Remove(batch);
        var counts = batch.CountsAt(now);
        _succeeded += counts.Succeeded;
        _errored += counts.Errored;
        _expired += counts.Expired;
        _cancelled += counts.Cancelled;
        foreach (var line in batch.Lines)
        {
            if (batch.FateOf(line, now) == LineFate.Succeeded)
            {
                executed(line.Key);
            }
        }

        if (batch.Dialect == BatchDialect.OpenAI)
        {
            var (output, errors) = OpenAIResultFiles.Write(batch, now);
            batch.OutputFileId = Keep(output, "output");
            batch.ErrorFileId = Keep(errors, "error");
        }

        string? Keep(byte[]? content, string kind)
        {
            if (content is null)
            {
                return null;
            }

            var file = new SimulatedFile(NewId("file-"), $"{batch.Id}_{kind}.jsonl", "batch_output", batch.EndsAt, content);
            _files.Add(file.Id, file);
            return file.Id;
        }
    }
}
