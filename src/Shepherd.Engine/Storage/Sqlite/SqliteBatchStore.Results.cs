using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class SqliteBatchStore
{
    /// <inheritdoc />
    public IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, long skip, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentOutOfRangeException.ThrowIfNegative(skip);
        return StoreRows.PagedAsync((after, offset, _) => QueryAsync(StoreSql.ResultsPage, StoreRows.ReadResult,
                ("@batch", batchId), ("@after", after), ("@limit", _options.ResultPageSize), ("@offset", offset)),
            result => result.Line, _options.ResultPageSize, skip, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ItemResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(customId);
        await using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = StoreSql.ResultByCustomId;
        Bind(command, [("@batch", batchId), ("@custom_id", customId)]);
        using var reader = command.ExecuteReader();
        return reader.Read() ? StoreRows.ReadResult(reader) : null;
    }

    /// <inheritdoc />
    public IAsyncEnumerable<ImportItem> ReadRequestsAsync(string batchId, IReadOnlyCollection<ItemState> states, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(states);
        var wanted = string.Join(", ", states.Select(state => (int)state));
        return StoreRows.PagedAsync((after, _, _) => QueryAsync($"""
            SELECT i.line, i.custom_id, i.model, b.body
            FROM items i JOIN item_bodies b ON b.item_id = i.id
            WHERE i.batch_id = $batch AND i.line > $after AND i.state IN ({wanted})
            ORDER BY i.line
            LIMIT $limit
            """, r => new ImportItem(r.GetInt64(0), r.GetString(1), r.GetString(2), (byte[])r.GetValue(3)), ("$batch", batchId), ("$after", after), ("$limit", _options.ResultPageSize)),
            request => request.Line, _options.ResultPageSize, 0, cancellationToken);
    }
}
