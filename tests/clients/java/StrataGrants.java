// JDBC's DatabaseMetaData.getTablePrivileges against strata serve (run by
// tests/roles.rs as the superuser `admin`): one line per privilege.
import java.sql.*;

public class StrataGrants {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("STRATA_PORT")
            + "/strata?user=admin&password=adminpw&connectTimeout=10";
        try (Connection c = DriverManager.getConnection(url);
             ResultSet rs = c.getMetaData().getTablePrivileges(null, "public", "accounts")) {
            while (rs.next()) {
                System.out.println(rs.getString("TABLE_NAME") + " " + rs.getString("GRANTEE") + " "
                    + rs.getString("PRIVILEGE") + " (grantor " + rs.getString("GRANTOR") + ")");
            }
        }
        System.out.println("jdbc: done");
    }
}
