using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Batches;

/// <summary>How many lines an export wrote.</summary>
/// <param name="Succeeded">Lines written to the output.</param>
/// <param name="Failed">Lines written to the errors: failed, cancelled and expired items.</param>
/// <param name="Unfinished">Items that have not ended, so have no line.</param>
public sealed record ExportSummary(long Succeeded, long Failed, long Unfinished)
{
    /// <summary>For a table, the rows the output holds (a row per request, whatever its end); null for result lines.</summary>
    public long? Rows { get; init; }
}

/// <summary>
/// Streams a batch's results from the store into an output and an errors stream, in input
/// order, one page at a time: memory stays flat however large the batch.
/// </summary>
public static class ResultExporter
{
    /// <summary>Writes succeeded items to <paramref name="output"/> and failed ones to <paramref name="errors"/>.</summary>
    public static async Task<ExportSummary> ExportAsync(IBatchStore store, BatchRecord batch, Stream output, Stream errors, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(errors);
        using var writer = new ResultLineWriter(batch.Format, batch.Id);
        var tally = new Tally(writer, output, errors);
        await foreach (var item in store.ReadResultsAsync(batch.Id, 0, cancellationToken))
        {
            await tally.AddAsync(item, cancellationToken);
        }

        return tally.Summary;
    }

    /// <summary>
    /// Writes every request of the batch as a row of a table (<paramref name="format"/>, CSV or
    /// Parquet) to <paramref name="output"/>, the failed ones also as result lines to
    /// <paramref name="errors"/>. The fields' columns are those of the schema the first structured
    /// request asks for, or the batch's own.
    /// </summary>
    public static async Task<ExportSummary> ExportTableAsync(IBatchStore store, BatchRecord batch, ResultFormat format, Stream output, Stream errors, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(batch);
        var endpoint = batch.Endpoint ?? BatchEndpoints.ChatCompletions;
        OutputContract? contract = null;
        var schema = OutputRules.Of(batch).Schema;
        await foreach (var request in store.ReadRequestsAsync(batch.Id, [ItemState.Succeeded, ItemState.Failed, ItemState.Cancelled, ItemState.Expired], cancellationToken))
        {
            if ((contract = StructuredOutput.Of(endpoint, request.Body, schema)) is not null)
            {
                break;
            }
        }

        using var writer = new ResultLineWriter(batch.Format, batch.Id);
        var tally = new Tally(writer, null, errors);
        async IAsyncEnumerable<TableRow> RowsAsync()
        {
            await foreach (var item in store.ReadResultsAsync(batch.Id, 0, cancellationToken))
            {
                await tally.AddAsync(item, cancellationToken);
                yield return TableExport.Row(endpoint, item, contract);
            }
        }

        var rows = await TableExport.WriteAsync(RowsAsync(), TableExport.Columns(contract, []), format, output, cancellationToken);
        return tally.Summary with { Rows = rows };
    }

    /// <summary>Counts the items of an export by their end, writing each to its file: succeeded ones to the output (when there is one), the rest that ended to the errors.</summary>
    private sealed class Tally(ResultLineWriter writer, Stream? output, Stream errors)
    {
        private long _succeeded;
        private long _failed;
        private long _unfinished;

        public ExportSummary Summary => new(_succeeded, _failed, _unfinished);

        public async ValueTask AddAsync(ItemResult item, CancellationToken cancellationToken)
        {
            switch (item.State)
            {
                case ItemState.Succeeded:
                    if (output is not null)
                    {
                        await writer.WriteAsync(output, item, cancellationToken);
                    }

                    _succeeded++;
                    break;
                case ItemState.Failed or ItemState.Cancelled or ItemState.Expired:
                    await writer.WriteAsync(errors, item, cancellationToken);
                    _failed++;
                    break;
                default:
                    _unfinished++;
                    break;
            }
        }
    }
}
