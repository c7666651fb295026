namespace Shepherd.Cli.Running;

/// <summary>The files of a SQLite state: the database, its journal, and a server's spool folder beside it.</summary>
internal static class StateFiles
{
    /// <summary>Removes the state at <paramref name="statePath"/>, so a start that came to nothing leaves nothing behind.</summary>
    public static void Delete(string statePath)
    {
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            File.Delete(statePath + suffix);
        }

        if (Directory.Exists(statePath + ".spool"))
        {
            Directory.Delete(statePath + ".spool", recursive: true);
        }
    }
}
