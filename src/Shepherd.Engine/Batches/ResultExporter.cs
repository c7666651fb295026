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
        long succeeded = 0, failed = 0, unfinished = 0;
        await foreach (var item in store.ReadResultsAsync(batch.Id, 0, cancellationToken))
        {
            switch (item.State)
            {
                case ItemState.Succeeded:
                    await writer.WriteAsync(output, item, cancellationToken);
                    succeeded++;
                    break;
                case ItemState.Failed or ItemState.Cancelled or ItemState.Expired:
                    await writer.WriteAsync(errors, item, cancellationToken);
                    failed++;
                    break;
                default:
                    unfinished++;
                    break;
            }
        }

        return new ExportSummary(succeeded, failed, unfinished);
    }

    /// <summary>
    /// Writes every request of the batch as a row of a table (<paramref name="format"/>, CSV or
    /// Parquet) to <paramref name="output"/>, the failed ones also as result lines to
    /// <paramref name="errors"/>. The fields' columns are those of the schema the first structured
    /// request asks for.
    /// </summary>
    public static async Task<ExportSummary> ExportTableAsync(IBatchStore store, BatchRecord batch, ResultFormat format, Stream output, Stream errors, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(batch);
        var endpoint = batch.Endpoint ?? BatchEndpoints.ChatCompletions;
        OutputContract? contract = null;
        await foreach (var request in store.ReadRequestsAsync(batch.Id, [ItemState.Succeeded, ItemState.Failed, ItemState.Cancelled, ItemState.Expired], cancellationToken))
        {
            if ((contract = StructuredOutput.Of(endpoint, request.Body)) is not null)
            {
                break;
            }
        }

        using var writer = new ResultLineWriter(batch.Format, batch.Id);
        long succeeded = 0, failed = 0, unfinished = 0;
        async IAsyncEnumerable<TableRow> RowsAsync()
        {
            await foreach (var item in store.ReadResultsAsync(batch.Id, 0, cancellationToken))
            {
                switch (item.State)
                {
                    case ItemState.Succeeded:
                        succeeded++;
                        break;
                    case ItemState.Failed or ItemState.Cancelled or ItemState.Expired:
                        await writer.WriteAsync(errors, item, cancellationToken);
                        failed++;
                        break;
                    default:
                        unfinished++;
                        break;
                }

                yield return TableExport.Row(endpoint, item, contract);
            }
        }

        var rows = await TableExport.WriteAsync(RowsAsync(), TableExport.Columns(contract, []), format, output, cancellationToken);
        return new ExportSummary(succeeded, failed, unfinished) { Rows = rows };
    }
}
