namespace Shepherd.Client;

/// <summary>A flush's life: the batch it makes, the wait for it and the results handed to their callers.</summary>
public sealed partial class BatchCollector
{
    /// <summary>
    /// Asks the server once, as the first request comes, whether it takes the client's key: a
    /// refused key fails the requests waiting and every later one at once, instead of when the
    /// first batch is flushed, up to <see cref="BatchCollectorOptions.MaxAge"/> later. Any other
    /// failure is left for the batches to meet and report.
    /// </summary>
    private async Task CheckKeyAsync()
    {
        try
        {
            await using var batches = _client.ListBatchesAsync(_abort.Token).GetAsyncEnumerator(_abort.Token);
            await batches.MoveNextAsync();
        }
        catch (ShepherdApiException ex) when (ex.StatusCode is 401 or 403)
        {
            lock (_gate)
            {
                _keyRefused = ex;
                FailUnsentLocked(() => Refusal(ex));
            }
        }
        catch (Exception ex) when (ex is ShepherdApiException or OperationCanceledException or ObjectDisposedException)
        {
            // Not a refused key: the batches meet it, and their callers learn of it then.
        }
    }

    private static BatchCollectorException Refusal(ShepherdApiException refused) =>
        new($"The server refused the client's key, so no request can be sent: {refused.Message}", null, refused);

    private async Task RunAsync(Flush flush)
    {
        var open = new Dictionary<string, Entry>(flush.Entries.Count, StringComparer.Ordinal);
        foreach (var entry in flush.Entries)
        {
            open.Add(entry.Item.CustomId, entry);
        }

        var count = flush.Entries.Count;
        string? batchId = null;
        TimeSpan? observed = null;
        var stage = "could not be waited for";
        try
        {
            var token = _abort.Token;
            var created = await _client.CreateBatchAsync(new NewBatch
            {
                Requests = [.. flush.Entries.Select(e => e.Item)],
                Model = _options.Model,
                Endpoint = _options.Endpoint,
                IdempotencyKey = $"shepherd-collector-{_instance}-{flush.Number}",
            }, token);
            batchId = created.Id;
            var completion = await _client.WaitForCompletionAsync(batchId, null, _options.WaitTimeout, token);
            if (completion.TimedOut)
            {
                // However the wait compares with the target, a batch that did not end was too slow.
                observed = TimeSpan.MaxValue;
                var within = _options.WaitTimeout is { } timeout ? $"within {timeout}" : "within the client's default timeout";
                Fail(open, batchId, $"Batch {batchId} ({count} requests) did not end {within}; it goes on on the server, and its results can be read later with GetResultsAsync(\"{batchId}\").", null);
                return;
            }

            var ended = completion.Batch;
            if (ended.Status == BatchStatus.Failed)
            {
                var why = ended.Errors.Count == 0 ? "no reason given" : string.Join("; ", ended.Errors.Select(e => e.Line is { } line ? $"line {line}: {e.Message}" : e.Message));
                Fail(open, batchId, $"Batch {batchId} ({count} requests) failed: {why}", null);
                return;
            }

            stage = "could not have its results read";
            await foreach (var result in _client.ResultsOfEnded(ended, token))
            {
                if (open.Remove(result.CustomId, out var entry))
                {
                    entry.Result.TrySetResult(result);
                }
            }

            foreach (var entry in open.Values)
            {
                entry.Result.TrySetException(new BatchCollectorException(
                    $"Batch {batchId} ended ({ended.Status}) without a result for the request {entry.Item.CustomId}.", batchId, null));
            }

            open.Clear();
            observed = _time.GetElapsedTime(flush.Started);
        }
        catch (OperationCanceledException ex) when (_abort.IsCancellationRequested)
        {
            Fail(open, batchId, batchId is null
                ? $"The collector was disposed before the batch of {count} requests was created."
                : $"The collector was disposed before batch {batchId} ({count} requests) ended; the batch goes on on the server.", ex);
        }
        catch (Exception ex)
        {
            Fail(open, batchId, batchId is null
                ? $"The batch of {count} requests could not be created: {ex.Message}"
                : $"Batch {batchId} ({count} requests) {stage}: {ex.Message}", ex);
        }
        finally
        {
            lock (_gate)
            {
                _inFlight--;
                if (observed is { } took)
                {
                    ObserveLocked(flush, took);
                }

                PumpLocked();
            }
        }
    }

    private static void Fail(Dictionary<string, Entry> open, string? batchId, string message, Exception? cause)
    {
        foreach (var entry in open.Values)
        {
            entry.Result.TrySetException(new BatchCollectorException(message, batchId, cause));
        }

        open.Clear();
    }

    private void ObserveLocked(Flush flush, TimeSpan observed)
    {
        // A batch made before the last change measured the old size: it does not count twice.
        if (_options.TargetLatency is not { } target || flush.Epoch != _epoch)
        {
            return;
        }

        var next = Adjust(_size, observed, target, _options.MinBatchSize, _options.MaxBatchSize);
        if (next != _size)
        {
            _size = next;
            _epoch++;
        }
    }
}
