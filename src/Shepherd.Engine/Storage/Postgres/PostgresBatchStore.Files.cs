using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    private const int FileChunkBytes = 1 << 20;

    /// <inheritdoc />
    public Task<FileRecord> AddFileAsync(NewFile file, Stream content, long maxBytes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(content);
        var createdAt = _time.GetUtcNow();

        // One transaction: a file too large, or cut off, leaves no chunk behind.
        return InTransactionAsync(async (connection, tx) =>
        {
            var buffer = new byte[FileChunkBytes];
            await using var insert = Command(connection, tx, "INSERT INTO file_chunks (file_id, n, data) VALUES (@id, @n, @data)", ("id", file.Id), ("n", 0), ("data", Array.Empty<byte>()));
            long bytes = 0;
            var n = 0;
            while (true)
            {
                var filled = await content.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken);
                bytes += filled;
                if (bytes > maxBytes)
                {
                    throw new FileTooLargeException($"The file is larger than {maxBytes} bytes.");
                }

                if (filled > 0)
                {
                    insert.Parameters["n"].Value = n++;
                    insert.Parameters["data"].Value = filled == buffer.Length ? buffer : buffer[..filled];
                    await insert.ExecuteNonQueryAsync(cancellationToken);
                }

                if (filled < buffer.Length)
                {
                    break;
                }
            }

            var stored = StoreRows.NewFileRecord(file, bytes, createdAt);
            await ExecuteAsync(connection, tx, StoreSql.InsertFile, cancellationToken,
                ("id", stored.Id), ("owner", stored.Owner), ("filename", stored.Filename), ("purpose", stored.Purpose), ("bytes", stored.Bytes),
                ("created", stored.CreatedAt.ToUnixTimeMilliseconds()), ("batch", stored.BatchId));
            return stored;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<FileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        return (await QueryAsync(StoreSql.FileById, StoreRows.ReadFile, cancellationToken, ("id", fileId))).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<Page<FileRecord>> ListFilesAsync(OwnerScope owner, string? purpose, PageRequest page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(page);
        var rows = await QueryAsync(PageQuery(StoreRows.FileColumns, "files", "(@everyone OR owner IS NOT DISTINCT FROM @owner) AND (@purpose::text IS NULL OR purpose = @purpose)", page), StoreRows.ReadFile, cancellationToken,
            ("owner", owner.Owner), ("everyone", owner.Everyone), ("purpose", purpose), ("after", page.After), ("before", page.Before), ("limit", page.Limit + 1));
        return StoreRows.ToPage(rows, page);
    }

    /// <inheritdoc />
    public async Task<Stream> OpenFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        var chunks = await ScalarAsync("SELECT (SELECT COUNT(*) FROM file_chunks WHERE file_id = @id) FROM files WHERE id = @id", cancellationToken, ("id", fileId));
        return chunks is long count
            ? new ChunkedFileStream(this, fileId, count)
            : throw new FileNotFoundException($"The file {fileId} is not in the store.", fileId);
    }

    /// <inheritdoc />
    public async Task<bool> DeleteFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        return await InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, "DELETE FROM file_chunks WHERE file_id = @id", cancellationToken, ("id", fileId));
            return await ExecuteAsync(connection, tx, StoreSql.DeleteFile, cancellationToken, ("id", fileId)) == 1;
        }, cancellationToken);
    }

    /// <summary>A stored file read back chunk by chunk, one query per chunk, so any size streams in constant memory.</summary>
    private sealed class ChunkedFileStream(PostgresBatchStore store, string fileId, long chunks) : Stream
    {
        private byte[] _chunk = [];
        private int _offset;
        private long _next;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (_offset == _chunk.Length)
            {
                if (_next == chunks)
                {
                    return 0;
                }

                _chunk = (byte[]?)await store.ScalarAsync("SELECT data FROM file_chunks WHERE file_id = @id AND n = @n", cancellationToken, ("id", fileId), ("n", (int)_next++))
                    ?? throw new IOException($"The file {fileId} was deleted while it was read.");
                _offset = 0;
            }

            var count = Math.Min(buffer.Length, _chunk.Length - _offset);
            _chunk.AsMemory(_offset, count).CopyTo(buffer);
            _offset += count;
            return count;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
