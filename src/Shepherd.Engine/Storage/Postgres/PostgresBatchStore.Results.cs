using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    /// <inheritdoc />
    public IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, long skip, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentOutOfRangeException.ThrowIfNegative(skip);
        return StoreRows.PagedAsync((after, offset, ct) => QueryAsync(StoreSql.ResultsPage, StoreRows.ReadResult, ct,
                ("batch", batchId), ("after", after), ("limit", _options.ResultPageSize), ("offset", offset)),
            result => result.Line, _options.ResultPageSize, skip, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ItemResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(customId);
        return (await QueryAsync(StoreSql.ResultByCustomId, StoreRows.ReadResult, cancellationToken,
            ("batch", batchId), ("custom_id", customId))).SingleOrDefault();
    }

    /// <inheritdoc />
    public IAsyncEnumerable<ImportItem> ReadRequestsAsync(string batchId, IReadOnlyCollection<ItemState> states, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(states);
        var wanted = states.Select(state => (int)state).ToArray();
        return StoreRows.PagedAsync((after, _, ct) => QueryAsync("""
            SELECT i.line, i.custom_id, i.model, b.body
            FROM items i JOIN item_bodies b ON b.item_id = i.id
            WHERE i.batch_id = @batch AND i.line > @after AND i.state = ANY(@states)
            ORDER BY i.line
            LIMIT @limit
            """, r => new ImportItem(r.GetInt64(0), r.GetString(1), r.GetString(2), (byte[])r.GetValue(3)), ct,
            ("batch", batchId), ("after", after), ("states", wanted), ("limit", _options.ResultPageSize)),
            request => request.Line, _options.ResultPageSize, 0, cancellationToken);
    }
}
